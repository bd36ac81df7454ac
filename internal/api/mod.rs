//! api: the generated API, as kratos keeps `api/`. `build.rs` compiles `proto/` into `OUT_DIR`;
//! this module only gives the generated code its path, `crate::api::image::v1`, so that the gRPC
//! service, the hub's cached event and the tests all name the same types without importing one
//! another. No hand-written logic lives here.

/// `proto/image/v1/`.
pub mod image {
    /// `image.v1`: the messages, the `ImageService` client and server.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("image.v1");

        /// The encoded descriptor set, for gRPC server reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/image_descriptor.bin"));
    }
}
