//! Fixtures shared by the fuzz targets and `write-seeds`: the key specs the
//! entity-key target scans for, and the example function's `EntitySpec`.

use std::sync::LazyLock;

use bytes::Bytes;
use massa::discovery::routes::{ACTION_PROTOCOL, EVENT_SOURCED_PROTOCOL, VALUE_ENTITY_PROTOCOL};
use massa::entity::key::{KeyField, KeyKind};
use massa::proto::cloudstate::{Entity, EntitySpec, ServiceInfo};
use prost_reflect::{DescriptorPool, MessageDescriptor};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet,
};

/// Key messages, each field a key: (name, fields as (number, type)). Every
/// key kind appears, 32- and 64-bit variants separately, plus a key wider
/// than the scanner's inline table and multi-byte field numbers.
const KEY_MESSAGES: &[(&str, &[(i32, Type)])] = &[
    ("StringKey", &[(1, Type::String)]),
    ("Int32Key", &[(2, Type::Int32)]),
    ("Composite", &[(1, Type::String), (2, Type::Int64), (3, Type::Sint32), (4, Type::Bool), (16, Type::Fixed64)]),
    (
        "Narrow",
        &[
            (1, Type::Uint32),
            (2, Type::Sint64),
            (3, Type::Fixed32),
            (4, Type::Sfixed32),
            (5, Type::Sfixed64),
            (6, Type::Uint64),
            (7, Type::Enum),
        ],
    ),
    (
        "Wide",
        &[
            (1, Type::String),
            (2, Type::Int64),
            (3, Type::String),
            (4, Type::Bool),
            (5, Type::String),
            (6, Type::Uint32),
            (7, Type::String),
            (8, Type::Int32),
            (9, Type::String),
            (10, Type::Sint32),
            (536_870_911, Type::String),
        ],
    ),
];

const KEY_PACKAGE: &str = "massa.fuzz";

/// The key specs as message descriptors, in `KEY_MESSAGES` order.
pub static KEY_SPECS: LazyLock<Vec<MessageDescriptor>> = LazyLock::new(|| {
    let pool = DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![key_file()] })
        .expect("the key fixture is a valid descriptor");
    KEY_MESSAGES
        .iter()
        .map(|(name, _)| pool.get_message_by_name(&format!("{KEY_PACKAGE}.{name}")).expect("declared above"))
        .collect()
});

fn key_file() -> FileDescriptorProto {
    let field = |(number, ty): &(i32, Type)| FieldDescriptorProto {
        name: Some(format!("f{number}")),
        number: Some(*number),
        label: Some(Label::Optional as i32),
        r#type: Some(*ty as i32),
        type_name: (*ty == Type::Enum).then(|| format!(".{KEY_PACKAGE}.Colour")),
        ..Default::default()
    };
    FileDescriptorProto {
        name: Some("massa_fuzz_keys.proto".to_owned()),
        package: Some(KEY_PACKAGE.to_owned()),
        syntax: Some("proto3".to_owned()),
        message_type: KEY_MESSAGES
            .iter()
            .map(|(name, fields)| DescriptorProto {
                name: Some((*name).to_owned()),
                field: fields.iter().map(field).collect(),
                ..Default::default()
            })
            .collect(),
        enum_type: vec![EnumDescriptorProto {
            name: Some("Colour".to_owned()),
            value: ["RED", "GREEN"]
                .iter()
                .zip(0..)
                .map(|(name, number)| EnumValueDescriptorProto {
                    name: Some((*name).to_owned()),
                    number: Some(number),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The scanner's view of a key message, built as discovery builds it.
pub fn key_fields(message: &MessageDescriptor) -> Vec<KeyField> {
    message
        .fields()
        .map(|f| KeyField { number: f.number(), kind: KeyKind::of(&f.kind()).expect("fixture keys are key kinds") })
        .collect()
}

/// The `EntitySpec` the example user function (`massa-example-fn`) reports.
pub fn example_spec(proto: Bytes) -> EntitySpec {
    let entity = |entity_type: &str, service_name: &str, persistence_id: &str| Entity {
        entity_type: entity_type.to_owned(),
        service_name: service_name.to_owned(),
        persistence_id: persistence_id.to_owned(),
        passivation_strategy: None,
    };
    EntitySpec {
        proto,
        entities: vec![
            entity(ACTION_PROTOCOL, "example.echo.Echo", "echo"),
            entity(EVENT_SOURCED_PROTOCOL, "com.example.shoppingcart.ShoppingCart", "shopping-cart"),
            entity(VALUE_ENTITY_PROTOCOL, "com.example.valueentity.shoppingcart.ShoppingCart", "value-shopping-cart"),
        ],
        service_info: Some(ServiceInfo {
            service_name: "massa-example-fn".to_owned(),
            protocol_major_version: 0,
            protocol_minor_version: 2,
            ..Default::default()
        }),
    }
}
