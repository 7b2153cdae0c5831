//! EFA and multi-card network interfaces (IBM's `efaCount` and `interfaceType`) as RunInstances
//! and launch templates take them. AWS's layout: the primary interface is device 0 on network
//! card 0; each further interface gets a card of its own at device index 1; an `efa-only`
//! interface is never the primary, so with them the primary is a plain ENA interface and the
//! EFA-only interfaces sit at device index 1 on cards 0, 1, ...

use aws_sdk_ec2::types::{
    InstanceNetworkInterfaceSpecification,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest,
};

use crate::domain::{InterfaceType, NetworkInterfaces};

/// One interface: (network card index, device index, interface type).
type Slot = (i32, i32, InterfaceType);

fn layout(n: &NetworkInterfaces) -> Vec<Slot> {
    let cards = 0..n.count as i32;
    match n.interface_type {
        InterfaceType::EfaOnly => std::iter::once((0, 0, InterfaceType::Interface))
            .chain(cards.map(|card| (card, 1, InterfaceType::EfaOnly)))
            .collect(),
        kind => cards
            .map(|card| (card, i32::from(card > 0), kind))
            .collect(),
    }
}

/// The interfaces of `n` built with `$builder` (RunInstances' and launch templates' types
/// differ, their fields do not), each also given what `$extra` sets.
macro_rules! built {
    ($n:expr, $groups:expr, $builder:ty, |$b:ident| $extra:expr) => {
        layout($n)
            .into_iter()
            .map(|(card, device, kind)| {
                let $b = <$builder>::builder()
                    .network_card_index(card)
                    .device_index(device)
                    .interface_type(kind.as_str())
                    .set_groups((!$groups.is_empty()).then(|| $groups.to_vec()))
                    .delete_on_termination(true);
                $extra.build()
            })
            .collect()
    };
}

/// RunInstances' interfaces, each in `subnet` with `groups` (which then leave the call's top
/// level: EC2 takes them in one place only).
pub fn run_interfaces(
    n: &NetworkInterfaces,
    subnet: Option<&str>,
    groups: &[String],
) -> Vec<InstanceNetworkInterfaceSpecification> {
    built!(n, groups, InstanceNetworkInterfaceSpecification, |b| b
        .set_subnet_id(subnet.map(str::to_string)))
}

/// A launch template's interfaces; fleets and groups give the subnet per override or zone.
pub fn template_interfaces(
    n: &NetworkInterfaces,
    groups: &[String],
) -> Vec<LaunchTemplateInstanceNetworkInterfaceSpecificationRequest> {
    built!(
        n,
        groups,
        LaunchTemplateInstanceNetworkInterfaceSpecificationRequest,
        |b| b
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(count: u32, interface_type: InterfaceType) -> Vec<Slot> {
        layout(&NetworkInterfaces {
            count,
            interface_type,
        })
    }

    #[test]
    fn the_primary_is_device_zero_on_card_zero_and_efa_only_is_never_primary() {
        use InterfaceType::{Efa, EfaOnly, Interface};
        assert_eq!(slots(3, Efa), [(0, 0, Efa), (1, 1, Efa), (2, 1, Efa)]);
        assert_eq!(
            slots(2, EfaOnly),
            [(0, 0, Interface), (0, 1, EfaOnly), (1, 1, EfaOnly)]
        );
        assert_eq!(slots(1, Interface), [(0, 0, Interface)]);
    }
}
