//! Generates the health service from the crate's own copy of `grpc/health/v1/health.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_build::compile_protos(&["proto/grpc/health/v1/health.proto"], &["proto"])?;
    Ok(())
}
