//! Generates the gRPC code from `proto/export.proto` (feature `server` only;
//! needs `protoc`, e.g. Debian's `protobuf-compiler`, or `PROTOC=/path`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "server")]
    {
        println!("cargo:rerun-if-changed=proto/export.proto");
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_protos(&["proto/export.proto"], &["proto"])
            .expect("cannot compile proto/export.proto (is protoc installed?)");
    }
}
