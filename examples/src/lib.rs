//! Code shared by the example programs: the generated modules and the service
//! implementations.

#![allow(missing_docs, unreachable_pub)]

/// gRPC's helloworld, generated from `proto/helloworld.proto`.
pub mod helloworld {
    include!(concat!(env!("OUT_DIR"), "/helloworld.rs"));
}

/// gRPC's route guide, generated from `proto/route_guide.proto`.
pub mod routeguide {
    include!(concat!(env!("OUT_DIR"), "/routeguide.rs"));
}

/// The encoded `FileDescriptorSet` of helloworld and routeguide (with their imports), which
/// `volley-build` writes beside the generated code: what a reflection service describes.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

pub mod auth_middleware;
pub mod custom_balancer;
pub mod etcd_discovery;
pub mod greeter;
pub mod load_balancing;
pub mod max_connection_age;
pub mod observability;
pub mod production;
pub mod route_guide;
pub mod route_guide_client;
