//! Generates both reflection services from the crate's own protos. The v1alpha messages are
//! the v1 ones (the two packages' messages are identical on the wire), so one implementation
//! serves both.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    volley_build::configure()
        .file_descriptor_set_path(out.join("reflection_v1.bin"))
        .compile(&["proto/grpc/reflection/v1/reflection.proto"], &["proto"])?;
    volley_build::configure()
        .file_descriptor_set_path(out.join("reflection_v1alpha.bin"))
        .extern_path(".grpc.reflection.v1alpha", "crate::proto::v1")
        .compile(
            &["proto/grpc/reflection/v1alpha/reflection.proto"],
            &["proto"],
        )?;
    Ok(())
}
