//! Inputs cannot make the runtime allocate without bound: the instance-buffer file's size is
//! bounded by its embedding width before it is read, and a header claiming a huge tensor is an
//! error, not an allocation. (The bundle's limits are in `src/bundle/tests.rs`, the Y4M reader's
//! in `src/source/tests.rs`, the board profile's in `src/board/tests.rs`.)

use sitfer_runtime::instance_buffer::{BUFFER_FORMAT, BUFFER_VERSION, InstanceBuffer, MAX_QUEUE_PER_CLASS};
use sitfer_runtime::labels::NUM_CLASSES;

const DIM: usize = 4;
const SPACE: &str = "limits:4";

fn load(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buffer.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let err = InstanceBuffer::new(DIM, 16).load(&path, SPACE).unwrap_err().to_string();
    assert!(err.contains("buffer.safetensors"), "{err}");
    err
}

#[test]
fn an_instance_buffer_file_larger_than_its_queues_can_hold_is_refused_unread() {
    // Every class's queue full, plus the header allowance, plus one byte.
    let limit = (64 << 10) + NUM_CLASSES * MAX_QUEUE_PER_CLASS * (4 * DIM + 1);
    let err = load(&vec![0u8; limit + 1]);
    assert!(err.contains("exceeds the limit"), "{err}");
}

#[test]
fn an_instance_buffer_header_claiming_a_huge_tensor_is_an_error() {
    let header = format!(
        r#"{{"__metadata__":{{"format":"{BUFFER_FORMAT}","version":"{BUFFER_VERSION}","space":"{SPACE}","sha256":"x"}},"embeddings":{{"dtype":"F32","shape":[1099511627776,{DIM}],"data_offsets":[0,16]}},"labels":{{"dtype":"U8","shape":[1099511627776],"data_offsets":[16,17]}}}}"#
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 17]);
    let err = load(&bytes);
    assert!(err.contains("invalid shape"), "{err}");
}
