//! gRPC's interop test service and client cases (`doc/interop-test-descriptions.md` in
//! grpc/grpc) on Volley: the library behind `volley-interop-server` and
//! `volley-interop-client`.

pub mod cases;
pub mod flags;
pub mod service;

/// The interop protos (`proto/grpc/testing/*.proto`), generated.
#[allow(missing_docs, unreachable_pub)]
pub mod testing {
    include!(concat!(env!("OUT_DIR"), "/grpc.testing.rs"));
}

/// The encoded `FileDescriptorSet` of the interop protos, for the server's reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

/// gRPC's test CA (`certs/ca.pem`), trusted by the client with `--use_test_ca=true`.
pub const TEST_CA: &[u8] = include_bytes!("../certs/ca.pem");
/// The server certificate the server presents with `--use_tls=true` (`certs/server1.pem`).
pub const SERVER_CERT: &[u8] = include_bytes!("../certs/server1.pem");
/// Its private key (`certs/server1.key`), a published test key.
pub const SERVER_KEY: &[u8] = include_bytes!("../certs/server1.key");
