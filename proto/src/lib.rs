//! Platform's API types, generated from `proto/platform/v1/*.proto`.
//!
//! Messages are prost types (binary protobuf) with serde implementations that follow the
//! proto3 JSON mapping (lowerCamelCase names, enums as strings, 64-bit integers as
//! strings), so the same types serve `application/proto` and `application/json` Connect
//! requests.

/// Version 1 of the API.
#[allow(missing_docs, clippy::all, reason = "generated code")]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/platform.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/platform.v1.serde.rs"));
}

pub use pbjson_types::Timestamp;

#[cfg(test)]
mod tests {
    use super::v1::*;

    #[test]
    fn json_uses_the_proto3_mapping() {
        let r = Release {
            id: "r1".into(),
            module_digest: "ab".into(),
            isolation: Isolation::PerRequest as i32,
            limits: Some(Limits {
                memory_bytes: 1 << 30,
                ..Default::default()
            }),
            ..Default::default()
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["moduleDigest"], "ab");
        assert_eq!(j["isolation"], "ISOLATION_PER_REQUEST");
        assert_eq!(j["limits"]["memoryBytes"], "1073741824");
        let back: Release = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
    }
}
