use super::*;
use crate::fusion::ClassEntries;
use crate::fusion::Probs;

fn e(v: f32) -> Vec<f32> {
    vec![v, 1.0 - v]
}

#[test]
fn queues_are_bounded_fifo_per_class_and_seed_is_kept() {
    let mut b = InstanceBuffer::new(2, 3);
    b.add_seed(0, &e(0.5));
    for i in 0..5 {
        b.push(1, &e(i as f32));
    }
    b.push(2, &e(9.0));
    let q1: Vec<Vec<f32>> = b.queued(1).map(<[f32]>::to_vec).collect();
    assert_eq!(q1, vec![e(2.0), e(3.0), e(4.0)]);
    assert_eq!(b.counts(), [1, 3, 1, 0, 0, 0, 0]);
    assert_eq!(b.class_entries(0).count(), 1);
    b.reset_queues();
    assert_eq!(b.counts(), [1, 0, 0, 0, 0, 0, 0]);
    let mut zero = InstanceBuffer::new(2, 0);
    zero.push(0, &e(1.0));
    assert!(zero.is_empty());
}

#[test]
fn save_load_round_trip_keeps_order_and_refuses_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buffer.safetensors");
    let mut b = InstanceBuffer::new(2, 4);
    b.add_seed(6, &e(0.1));
    for i in 0..6 {
        b.push(i % 3, &e(i as f32 / 10.0));
    }
    b.save(&path, "space-a").unwrap();
    let mut back = InstanceBuffer::new(2, 4);
    back.add_seed(6, &e(0.1));
    back.load(&path, "space-a").unwrap();
    assert_eq!(back, b);
    // A smaller capacity keeps the newest of each class.
    let mut small = InstanceBuffer::new(2, 1);
    small.load(&path, "space-a").unwrap();
    assert_eq!(small.queued(0).next().unwrap(), &e(0.3)[..]);
    // Another model's buffer.
    let err = back.load(&path, "space-b").unwrap_err().to_string();
    assert!(
        err.contains("another model") && err.contains("buffer.safetensors"),
        "{err}"
    );
    // Damage: a flipped byte in the data fails the checksum.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    let err = back.load(&bad, "space-a").unwrap_err().to_string();
    assert!(err.contains("checksum") || err.contains("class id"), "{err}");
}

#[test]
fn another_format_version_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.safetensors");
    let b = InstanceBuffer::new(2, 4);
    let bytes = b.to_file_bytes("s");
    // Rewrite the version in the JSON header (same length keeps the offsets valid).
    let text = bytes.clone();
    let pos = text.windows(13).position(|w| w == b"\"version\":\"1\"").unwrap();
    let mut changed = bytes;
    changed[pos + 11] = b'7';
    std::fs::write(&path, &changed).unwrap();
    let mut back = InstanceBuffer::new(2, 4);
    let err = back.load(&path, "s").unwrap_err();
    assert!(matches!(err, BufferError::Version { .. }), "{err}");
    assert!(err.to_string().contains("version 7"), "{err}");
}

#[test]
fn torn_write_leaves_the_previous_buffer_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buffer.safetensors");
    let mut b = InstanceBuffer::new(2, 4);
    b.push(3, &e(0.25));
    b.save(&path, "s").unwrap();
    // A writer killed mid-way leaves only its temporary file; the target is untouched.
    let err = crate::file_write::atomic_write(&path, |w| {
        use std::io::Write;
        w.write_all(b"partial")?;
        Err(std::io::Error::other("killed"))
    });
    assert!(err.is_err());
    let mut back = InstanceBuffer::new(2, 4);
    back.load(&path, "s").unwrap();
    assert_eq!(back.queued_counts()[3], 1);
}

fn p(class: usize, conf: f32) -> Probs {
    let mut v = [(1.0 - conf) / 6.0; 7];
    v[class] = conf;
    v
}

#[test]
fn admission_needs_stability_rate_limit_and_change() {
    let pol = AdmissionPolicy {
        threshold: 0.9,
        stable_frames: 3,
        min_interval_frames: 10,
        min_change: 0.05,
    };
    let mut st = TrackAdmission::default();
    let z = [1.0, 0.0];
    // Two confident frames: not yet; a low one breaks the streak.
    assert_eq!(pol.consider(&mut st, 0, &p(3, 0.95), &z), None);
    assert_eq!(pol.consider(&mut st, 1, &p(3, 0.95), &z), None);
    assert_eq!(pol.consider(&mut st, 2, &p(3, 0.5), &z), None);
    assert_eq!(pol.consider(&mut st, 3, &p(3, 0.95), &z), None);
    assert_eq!(pol.consider(&mut st, 4, &p(3, 0.95), &z), None);
    assert_eq!(pol.consider(&mut st, 5, &p(3, 0.95), &z), Some(3));
    // Rate limit: nothing within 10 frames.
    for f in 6..15 {
        assert_eq!(pol.consider(&mut st, f, &p(3, 0.99), &[0.0, 1.0]), None);
    }
    // After the interval: the same embedding is refused, a changed one admitted.
    assert_eq!(pol.consider(&mut st, 15, &p(3, 0.99), &z), None);
    assert_eq!(pol.consider(&mut st, 16, &p(3, 0.99), &[0.0, 1.0]), Some(3));
    // A class change restarts the streak.
    assert_eq!(pol.consider(&mut st, 40, &p(0, 0.99), &[0.6, 0.8]), None);
}

#[test]
fn a_track_returning_to_an_earlier_look_is_a_duplicate_of_any_admission_not_just_the_last() {
    let pol = AdmissionPolicy {
        threshold: 0.9,
        stable_frames: 1,
        min_interval_frames: 0,
        min_change: 0.05,
    };
    let axis = |k: usize| -> Vec<f32> { (0..TRACK_MEMORY + 4).map(|i| (i == k) as u8 as f32).collect() };
    let mut st = TrackAdmission::default();
    let (a, b) = (axis(0), axis(1));
    assert_eq!(pol.consider(&mut st, 0, &p(3, 0.95), &a), Some(3));
    assert_eq!(pol.consider(&mut st, 1, &p(3, 0.95), &b), Some(3));
    // Back to the first look: the last admission (b) is far, the first one is not.
    assert_eq!(pol.consider(&mut st, 2, &p(3, 0.95), &a), None);
    // Without a frame interval, every new look is admitted at once.
    let mut c = vec![0f32; TRACK_MEMORY + 4];
    (c[0], c[1]) = (0.6, 0.8);
    assert_eq!(pol.consider(&mut st, 3, &p(3, 0.95), &c), Some(3));
    // The memory is bounded: after TRACK_MEMORY other admissions the first look is new again.
    for k in 0..TRACK_MEMORY {
        let other = axis(2 + k % (TRACK_MEMORY + 2));
        assert_eq!(
            pol.consider(&mut st, 10 + k as u64, &p(3, 0.95), &other),
            Some(3),
            "{k}"
        );
    }
    assert_eq!(pol.consider(&mut st, 100, &p(3, 0.95), &a), Some(3));
}
