//! A deserializer adapter under which a struct is read from a JSON object only. serde's derived
//! structs also accept a sequence of their fields' values by position, so `["RANDOM"]` (or
//! `{"selection_criteria": [true]}`) would fill fields that were never named; every struct in
//! the API is an object. The adapter wraps the deserializer at every level (elements, map
//! values, `Option`s, enum variants) and refuses a sequence where a struct is asked for.
//!
//! It also refuses a string holding a NUL character (`\u0000`): no name, id or message means
//! one, and PostgreSQL cannot store it (SQLite would, so the two backends would differ).
//!
//! Types that buffer their input first (`#[serde(flatten)]`, untagged enums) read from serde's
//! own buffer, which this adapter cannot see into; no API body uses them for structs.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};

pub struct ObjectsOnly<D>(pub D);

/// Forwards each `deserialize_*` to the inner deserializer with the visitor wrapped.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method($($arg,)* Wrap { inner: visitor, object: false })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    forward! {
        deserialize_any() deserialize_bool() deserialize_i8() deserialize_i16()
        deserialize_i32() deserialize_i64() deserialize_i128() deserialize_u8()
        deserialize_u16() deserialize_u32() deserialize_u64() deserialize_u128()
        deserialize_f32() deserialize_f64() deserialize_char() deserialize_str()
        deserialize_string() deserialize_bytes() deserialize_byte_buf() deserialize_option()
        deserialize_unit() deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str) deserialize_seq()
        deserialize_tuple(len: usize) deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_map() deserialize_enum(name: &'static str, variants: &'static [&'static str])
        deserialize_identifier() deserialize_ignored_any()
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(
            name,
            fields,
            Wrap {
                inner: visitor,
                object: true,
            },
        )
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The caller's visitor; `object`: a struct is being read, so a sequence is refused.
struct Wrap<V> {
    inner: V,
    object: bool,
}

macro_rules! pass {
    ($($method:ident($ty:ty))*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)?;
        if self.object {
            f.write_str(" (a JSON object)")?;
        }
        Ok(())
    }

    pass! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.inner.visit_str(without_nul(v)?)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.inner.visit_borrowed_str(without_nul(v)?)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        without_nul(&v)?;
        self.inner.visit_string(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(ObjectsOnly(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(ObjectsOnly(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        if self.object {
            return Err(de::Error::invalid_type(Unexpected::Seq, &self));
        }
        self.inner.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Map(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Enum(data))
    }
}

/// The message of a string holding a NUL character.
pub const NUL_MESSAGE: &str = "must not contain a NUL character (\\u0000)";

fn without_nul<E: de::Error>(v: &str) -> Result<&str, E> {
    if v.contains('\0') {
        return Err(E::custom(NUL_MESSAGE));
    }
    Ok(v)
}

/// A seed whose value is read through the adapter.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(ObjectsOnly(d))
    }
}

struct Seq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Map<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Enum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        self.0
            .variant_seed(Seed(seed))
            .map(|(value, variant)| (value, Variant(variant)))
    }
}

struct Variant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(
            len,
            Wrap {
                inner: visitor,
                object: false,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(
            fields,
            Wrap {
                inner: visitor,
                object: true,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Criteria {
        require_healthy: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Off,
        Limit { max: u32 },
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        policy: String,
        criteria: Option<Criteria>,
        #[serde(default)]
        list: Vec<Criteria>,
        #[serde(default)]
        by_name: BTreeMap<String, Criteria>,
        #[serde(default)]
        pair: Option<(u8, u8)>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(ObjectsOnly(&mut de))
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn objects_sequences_and_values_read_as_before() {
        let body: Body = parse(
            r#"{"policy": "RANDOM", "criteria": {"require_healthy": true},
                "list": [{"require_healthy": false}], "by_name": {"a": {"require_healthy": true}},
                "pair": [1, 2], "mode": {"limit": {"max": 3}}}"#,
        )
        .unwrap();
        assert_eq!(
            body.criteria,
            Some(Criteria {
                require_healthy: true
            })
        );
        assert_eq!(
            body.list,
            [Criteria {
                require_healthy: false
            }]
        );
        assert_eq!(body.pair, Some((1, 2)));
        assert_eq!(body.mode, Some(Mode::Limit { max: 3 }));
        let off: Body = parse(r#"{"policy": "x", "criteria": null, "mode": "off"}"#).unwrap();
        assert_eq!((off.criteria, off.mode), (None, Some(Mode::Off)));
    }

    #[test]
    fn a_struct_from_an_array_is_refused_where_it_is() {
        for (text, path) in [
            (r#"["RANDOM"]"#, "."),
            (r#"{"policy": "x", "criteria": [true]}"#, "criteria"),
            (r#"{"policy": "x", "list": [[false]]}"#, "list[0]"),
            (r#"{"policy": "x", "by_name": {"a": [true]}}"#, "by_name.a"),
            (r#"{"policy": "x", "mode": {"limit": [3]}}"#, "mode.limit"),
        ] {
            let err = parse::<Body>(text).unwrap_err();
            assert!(
                err.starts_with(&format!("{path}: invalid type: sequence")),
                "{text}: {err}"
            );
            assert!(err.contains("(a JSON object)"), "{err}");
        }
    }

    #[test]
    fn a_string_holding_nul_is_refused_where_it_is() {
        for (text, path) in [
            (r#"{"policy": "a\u0000b"}"#, "policy"),
            (
                r#"{"policy": "x", "by_name": {"k\u0000": {"require_healthy": true}}}"#,
                "by_name.?",
            ),
        ] {
            let err = parse::<Body>(text).unwrap_err();
            assert!(
                err.starts_with(&format!("{path}: {NUL_MESSAGE}")),
                "{text}: {err}"
            );
        }
        let err = parse::<serde_json::Value>(r#"{"k": {"l": ["a\u0000"]}}"#).unwrap_err();
        assert!(err.starts_with(&format!("k.l[0]: {NUL_MESSAGE}")), "{err}");
    }
}
