//! Services, methods, messages and enums printed as `.proto` text.

use std::fmt::Write;

use prost_reflect::{
    Cardinality, DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, ServiceDescriptor,
};

/// What a symbol names.
#[derive(Debug, Clone)]
pub enum Symbol {
    /// A service.
    Service(ServiceDescriptor),
    /// A method of a service.
    Method(MethodDescriptor),
    /// A message type.
    Message(MessageDescriptor),
    /// An enum type.
    Enum(EnumDescriptor),
}

/// A full name with a leading dot removed, and `pkg.Service/Method` turned into
/// `pkg.Service.Method`.
pub fn normalize(symbol: &str) -> String {
    symbol.trim_start_matches('.').replace('/', ".")
}

/// Finds `symbol` (a full name) in `pool`.
pub fn find(pool: &DescriptorPool, symbol: &str) -> Option<Symbol> {
    let name = normalize(symbol);
    if let Some(service) = pool.get_service_by_name(&name) {
        return Some(Symbol::Service(service));
    }
    if let Some(message) = pool.get_message_by_name(&name) {
        return Some(Symbol::Message(message));
    }
    if let Some(e) = pool.get_enum_by_name(&name) {
        return Some(Symbol::Enum(e));
    }
    let (service, method) = name.rsplit_once('.')?;
    pool.get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)
        .map(Symbol::Method)
}

/// `symbol` as `.proto` text, under a line saying what it is.
pub fn describe(symbol: &Symbol) -> String {
    let mut out = String::new();
    match symbol {
        Symbol::Service(s) => {
            let _ = writeln!(out, "{} is a service:", s.full_name());
            service(&mut out, s);
        }
        Symbol::Method(m) => {
            let _ = writeln!(out, "{} is a method:", m.full_name());
            let _ = writeln!(out, "{}", rpc(m));
        }
        Symbol::Message(m) => {
            let _ = writeln!(out, "{} is a message:", m.full_name());
            message(&mut out, m, 0);
        }
        Symbol::Enum(e) => {
            let _ = writeln!(out, "{} is an enum:", e.full_name());
            enumeration(&mut out, e, 0);
        }
    }
    out
}

/// The RPC kind of a method, as the CLI names it.
pub fn kind(method: &MethodDescriptor) -> &'static str {
    match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => "unary",
        (true, false) => "client streaming",
        (false, true) => "server streaming",
        (true, true) => "bidi streaming",
    }
}

fn rpc(m: &MethodDescriptor) -> String {
    let stream = |on: bool| if on { "stream " } else { "" };
    format!(
        "rpc {}({}{}) returns ({}{});",
        m.name(),
        stream(m.is_client_streaming()),
        m.input().full_name(),
        stream(m.is_server_streaming()),
        m.output().full_name()
    )
}

fn service(out: &mut String, s: &ServiceDescriptor) {
    let _ = writeln!(out, "service {} {{", s.name());
    for m in s.methods() {
        let _ = writeln!(out, "  {}", rpc(&m));
    }
    let _ = writeln!(out, "}}");
}

fn type_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
    }
}

fn field_line(f: &FieldDescriptor) -> String {
    let ty = if f.is_map() {
        match f.kind() {
            Kind::Message(entry) => {
                let key = entry.map_entry_key_field();
                let value = entry.map_entry_value_field();
                format!(
                    "map<{}, {}>",
                    type_name(&key.kind()),
                    type_name(&value.kind())
                )
            }
            other => type_name(&other),
        }
    } else {
        type_name(&f.kind())
    };
    let label = match f.cardinality() {
        Cardinality::Repeated if !f.is_map() => "repeated ",
        Cardinality::Required => "required ",
        Cardinality::Optional if f.field_descriptor_proto().proto3_optional() => "optional ",
        Cardinality::Optional if f.parent_file().syntax() == prost_reflect::Syntax::Proto2 => {
            "optional "
        }
        _ => "",
    };
    format!("{label}{ty} {} = {};", f.name(), f.number())
}

fn message(out: &mut String, m: &MessageDescriptor, depth: usize) {
    let pad = "  ".repeat(depth);
    let _ = writeln!(out, "{pad}message {} {{", m.name());
    let mut in_oneof = std::collections::HashSet::new();
    for oneof in m.oneofs().filter(|o| !o.is_synthetic()) {
        let _ = writeln!(out, "{pad}  oneof {} {{", oneof.name());
        for f in oneof.fields() {
            in_oneof.insert(f.number());
            let _ = writeln!(out, "{pad}    {}", field_line(&f));
        }
        let _ = writeln!(out, "{pad}  }}");
    }
    for f in m.fields().filter(|f| !in_oneof.contains(&f.number())) {
        let _ = writeln!(out, "{pad}  {}", field_line(&f));
    }
    for nested in m.child_messages().filter(|n| !n.is_map_entry()) {
        message(out, &nested, depth + 1);
    }
    for e in m.child_enums() {
        enumeration(out, &e, depth + 1);
    }
    let _ = writeln!(out, "{pad}}}");
}

fn enumeration(out: &mut String, e: &EnumDescriptor, depth: usize) {
    let pad = "  ".repeat(depth);
    let _ = writeln!(out, "{pad}enum {} {{", e.name());
    for v in e.values() {
        let _ = writeln!(out, "{pad}  {} = {};", v.name(), v.number());
    }
    let _ = writeln!(out, "{pad}}}");
}
