//! Generates the interop services from the project's copies of gRPC's test protos.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_build::configure().compile(&["proto/grpc/testing/test.proto"], &["proto"])?;
    Ok(())
}
