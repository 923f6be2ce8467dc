//! Generates the helloworld and routeguide code from the `.proto` files.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_build::compile_protos(
        &["proto/helloworld.proto", "proto/route_guide.proto"],
        &["proto"],
    )?;
    Ok(())
}
