//! The protojson conventions Hubble's JSON follows, in one place, so the flow and filter types can
//! stay plain `serde` derives: enums as names (numbers accepted on input), 64-bit integers as
//! strings, default values left out.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Unexpected, Visitor};
use serde::ser::{SerializeSeq, Serializer};

/// protojson leaves out every field that holds its default value; `skip_serializing_if` helper.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// protojson reads `null` as "field not set"; serde's derives would refuse it for lists and
/// strings, so these fields go through here.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A protobuf enum: serialized as its name, read from its name or its number.
pub trait ProtoEnum: Copy + Default + Eq + 'static {
    /// The protobuf type name, for error messages.
    const TYPE_NAME: &'static str;
    /// All value names, in declaration order, for error messages.
    const NAMES: &'static [&'static str];
    /// The value's protobuf name, e.g. `"FORWARDED"`.
    fn as_str(self) -> &'static str;
    /// The value's protobuf number.
    fn number(self) -> i32;
    /// Looks a value up by its exact protobuf name.
    fn from_name(name: &str) -> Option<Self>;
    /// Looks a value up by its protobuf number.
    fn from_number(number: i32) -> Option<Self>;
}

/// Reads an enum from a name or a number. `lenient` maps unknown values (a newer Hubble's
/// additions) and `null` to the default instead of failing, which is what flows need; requests
/// stay strict so a typo is reported rather than silently matching nothing.
struct EnumVisitor<E> {
    lenient: bool,
    marker: PhantomData<E>,
}

impl<E: ProtoEnum> EnumVisitor<E> {
    fn number<Err: de::Error>(&self, n: i64) -> Result<E, Err> {
        let found = i32::try_from(n).ok().and_then(E::from_number);
        match found {
            Some(value) => Ok(value),
            None if self.lenient => Ok(E::default()),
            None => Err(Err::invalid_value(Unexpected::Signed(n), self)),
        }
    }
}

impl<'de, E: ProtoEnum> Visitor<'de> for EnumVisitor<E> {
    type Value = E;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} name or number", E::TYPE_NAME)
    }

    fn visit_str<Err: de::Error>(self, v: &str) -> Result<E, Err> {
        match E::from_name(v) {
            Some(value) => Ok(value),
            None if self.lenient => Ok(E::default()),
            None => Err(Err::unknown_variant(v, E::NAMES)),
        }
    }

    fn visit_i64<Err: de::Error>(self, v: i64) -> Result<E, Err> {
        self.number(v)
    }

    fn visit_u64<Err: de::Error>(self, v: u64) -> Result<E, Err> {
        self.number(i64::try_from(v).unwrap_or(i64::MAX))
    }

    fn visit_unit<Err: de::Error>(self) -> Result<E, Err> {
        if self.lenient {
            Ok(E::default())
        } else {
            Err(Err::invalid_type(Unexpected::Unit, &self))
        }
    }

    fn visit_none<Err: de::Error>(self) -> Result<E, Err> {
        self.visit_unit()
    }
}

/// Strict enum reading, used by the generated `Deserialize` impls.
pub(crate) fn deserialize_enum<'de, D: Deserializer<'de>, E: ProtoEnum>(
    deserializer: D,
) -> Result<E, D::Error> {
    deserializer.deserialize_any(EnumVisitor {
        lenient: false,
        marker: PhantomData,
    })
}

/// Lenient enum reading for flow fields (see [`EnumVisitor`]).
pub(crate) fn lenient_enum<'de, D: Deserializer<'de>, E: ProtoEnum>(
    deserializer: D,
) -> Result<E, D::Error> {
    deserializer.deserialize_any(EnumVisitor {
        lenient: true,
        marker: PhantomData,
    })
}

/// Declares a protobuf enum: the Rust enum plus its name table, `Display`, `FromStr` and serde
/// impls. The variant marked `#[default]` must be the zero value.
macro_rules! proto_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $proto:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $number:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $number, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The protobuf name, e.g. as printed in Hubble's JSON.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The protobuf number.
            pub const fn number(self) -> i32 {
                self as i32
            }

            /// Looks a value up by its protobuf number.
            pub const fn from_number(number: i32) -> Option<Self> {
                match number { $($number => Some($name::$variant),)+ _ => None }
            }

            /// Looks a value up by its exact protobuf name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl $crate::pbjson::ProtoEnum for $name {
            const TYPE_NAME: &'static str = $proto;
            const NAMES: &'static [&'static str] = &[$($text),+];
            fn as_str(self) -> &'static str { $name::as_str(self) }
            fn number(self) -> i32 { $name::number(self) }
            fn from_name(name: &str) -> Option<Self> { $name::from_name(name) }
            fn from_number(number: i32) -> Option<Self> { $name::from_number(number) }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::pbjson::UnknownEnumValue;

            /// Accepts the protobuf name or number, like protojson does.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::from_name(s)
                    .or_else(|| s.parse::<i32>().ok().and_then($name::from_number))
                    .ok_or_else(|| $crate::pbjson::UnknownEnumValue {
                        type_name: $proto,
                        value: s.to_owned(),
                        names: &[$($text),+],
                    })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::pbjson::deserialize_enum(deserializer)
            }
        }
    };
}
pub(crate) use proto_enum;

/// A string that names no value of a protobuf enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {type_name}; expected one of {}", names.join(", "))]
pub struct UnknownEnumValue {
    /// The protobuf enum's name.
    pub type_name: &'static str,
    /// The rejected input.
    pub value: String,
    /// The accepted names.
    pub names: &'static [&'static str],
}

/// protojson writes 64-bit integers as strings (JavaScript numbers lose precision past 2^53) and
/// reads them from strings or numbers.
pub(crate) mod u64_string {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(U64Visitor)
    }
}

/// [`u64_string`] for repeated fields.
pub(crate) mod vec_u64_string {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        values: &[u64],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(values.len()))?;
        for value in values {
            seq.serialize_element(&U64Str(*value))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u64>, D::Error> {
        struct SeqVisitor;
        impl<'de> Visitor<'de> for SeqVisitor {
            type Value = Vec<u64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of 64-bit unsigned integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u64>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(U64Str(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(out)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Vec<u64>, E> {
                Ok(Vec::new())
            }
        }
        deserializer.deserialize_any(SeqVisitor)
    }
}

/// One 64-bit value in protojson form.
struct U64Str(u64);

impl serde::Serialize for U64Str {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for U64Str {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(U64Visitor).map(U64Str)
    }
}

struct U64Visitor;

impl Visitor<'_> for U64Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an unsigned 64-bit integer, as a number or a decimal string")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        // protojson accepts integral floats such as 1e3; anything else would silently truncate.
        if v.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        // Rust's parser would also take a leading '+', which protojson does not write.
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::invalid_value(Unexpected::Str(v), &self));
        }
        v.parse()
            .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(0)
    }
}
