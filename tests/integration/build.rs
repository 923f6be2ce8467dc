//! Generates the test service.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_build::configure()
        .include_file("protos.rs")
        .compile(&["proto/echo.proto"], &["proto"])?;
    Ok(())
}
