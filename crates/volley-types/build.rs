//! Generates google.rpc's Status and error details from the crate's own protos.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_build::compile_protos(
        &[
            "proto/google/rpc/status.proto",
            "proto/google/rpc/error_details.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
