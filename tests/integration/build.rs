//! Generates the test service.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_build::compile_protos(&["proto/echo.proto"], &["proto"])?;
    Ok(())
}
