//! Generates the Greeter for Volley (volley-build) and for tonic (tonic-prost-build fed by
//! protox, so that no protoc is needed), each into its own directory, and the soak test's
//! service for Volley.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let volley_out = out.join("volley");
    let tonic_out = out.join("tonic");
    std::fs::create_dir_all(&volley_out)?;
    std::fs::create_dir_all(&tonic_out)?;
    volley_build::configure()
        .out_dir(&volley_out)
        .compile(&["proto/helloworld.proto", "proto/soak.proto"], &["proto"])?;
    let fds = protox::compile(["helloworld.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .out_dir(&tonic_out)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/helloworld.proto");
    println!("cargo:rerun-if-changed=proto/soak.proto");
    Ok(())
}
