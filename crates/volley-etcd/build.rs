//! Generates Volley's client for etcd's v3 API from the project's own copies of etcd's
//! `.proto` files (the subset it uses).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_build::compile_protos(
        &[
            "proto/etcd/api/mvccpb/kv.proto",
            "proto/etcd/api/etcdserverpb/rpc.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
