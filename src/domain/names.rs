//! Names of enumerated settings (policies, modes, provisioning APIs, price types): written one
//! canonical way, accepted in any case (`circuit_breaker`, `Adaptive`, `ec2fleet`), as the
//! reference's guide and the templates files write them.

/// Defines a fieldless enum with its canonical names (and optional aliases), `as_str`,
/// `FromStr` (any case, `-` for `_`), and serde in both directions through the name.
macro_rules! named_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident => $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let upper = s.trim().to_ascii_uppercase().replace('-', "_");
                let aliases: &[(&str, $name)] = &[$($(($alias, $name::$variant),)*)+];
                Self::ALL
                    .iter()
                    .copied()
                    // Canonical names with `-` (`efa-only`, `capacity-block`) compare alike.
                    .find(|v| v.as_str().to_ascii_uppercase().replace('-', "_") == upper)
                    .or_else(|| aliases.iter().find(|(a, _)| a.to_ascii_uppercase().replace('-', "_") == upper).map(|(_, v)| *v))
                    .ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("unknown {} '{s}', expected one of {}", $what, names.join(", "))
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// A string of the canonical names; documents where the enum crosses a wire (the
        /// provider protocol). Any case is accepted, as `FromStr` does.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some(concat!("A ", $what, " (any case).")))
                    .enum_values(Some(Self::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <String as serde::Deserialize>::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    named_enum! {
        enum Colour ("colour") { Dark => "DARK" | "black", LightBlue => "LIGHT_BLUE", Teal => "tealGreen" }
    }

    #[test]
    fn names_parse_in_any_case_and_serialize_canonically() {
        assert_eq!("light_blue".parse::<Colour>(), Ok(Colour::LightBlue));
        assert_eq!("Light-Blue".parse::<Colour>(), Ok(Colour::LightBlue));
        assert_eq!("Black".parse::<Colour>(), Ok(Colour::Dark));
        assert_eq!("TEALGREEN".parse::<Colour>(), Ok(Colour::Teal));
        assert_eq!(
            "red".parse::<Colour>().unwrap_err(),
            "unknown colour 'red', expected one of DARK, LIGHT_BLUE, tealGreen"
        );
        assert_eq!(serde_json::to_value(Colour::Dark).unwrap(), "DARK");
        let c: Colour = serde_json::from_value(serde_json::json!("dark")).unwrap();
        assert_eq!(c, Colour::Dark);
    }
}
