//! The real-use workload both global-allocator tests run: std collections, strings and
//! formatting on several threads, a channel pipeline, and serde_json (a crate nobody here wrote)
//! parsing and printing a large document, which must give the same text as with the system
//! allocator.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::mpsc;
use std::thread;

/// Threads running `collections_and_strings` at once.
pub const THREADS: usize = if cfg!(miri) { 2 } else { 4 };

/// Messages through the channel pipeline (fewer under Miri, where every step is slow).
const PIPELINE: u64 = if cfg!(miri) { 10 } else { 2_000 };

fn collections_and_strings(seed: usize) -> usize {
    let mut map: HashMap<String, Vec<usize>> = HashMap::new();
    let mut tree = BTreeMap::new();
    for i in 0..if cfg!(miri) { 30 } else { 5_000 } {
        let key = format!("key-{}-{}", seed, i % 700);
        map.entry(key.clone()).or_default().push(i);
        tree.insert(i * 7 % 1_001, key);
    }
    let mut text = String::new();
    for (k, v) in map.iter().take(200) {
        let _ = write!(text, "{k}={};", v.len());
    }
    let boxed: Vec<Box<[u8]>> = (0..if cfg!(miri) { 20 } else { 500 })
        .map(|i| vec![i as u8; i % 300 + 1].into_boxed_slice())
        .collect();
    map.len() + tree.len() + text.len() + boxed.iter().map(|b| b.len()).sum::<usize>()
}

fn channel_pipeline() -> u64 {
    let (tx, rx) = mpsc::channel::<Vec<u64>>();
    let (tx2, rx2) = mpsc::channel::<String>();
    let producer = thread::spawn(move || {
        for i in 0..PIPELINE {
            tx.send((0..(i % 64)).collect()).unwrap();
        }
    });
    let transformer = thread::spawn(move || {
        for v in rx {
            tx2.send(format!("{:?}", v.iter().sum::<u64>())).unwrap();
        }
    });
    let total: u64 = rx2.iter().map(|s| s.parse::<u64>().unwrap()).sum();
    producer.join().unwrap();
    transformer.join().unwrap();
    total
}

/// A deterministic JSON document of about `n` records, in serde_json's compact form.
fn document(n: usize) -> String {
    let records: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": i,
                "name": format!("item-{i:05}"),
                "tags": (0..i % 7).map(|t| format!("t{t}")).collect::<Vec<_>>(),
                "price": (i as f64) * 0.25,
                "nested": { "ok": i % 3 == 0, "list": (0..i % 5).collect::<Vec<_>>() },
            })
        })
        .collect();
    serde_json::to_string(&records).unwrap()
}

/// Everything the test runs, once.
pub fn workload() -> usize {
    let handles: Vec<_> = (0..THREADS).map(|t| thread::spawn(move || collections_and_strings(t))).collect();
    let sizes: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(sizes.iter().all(|&s| s > 0));
    assert_eq!(channel_pipeline(), (0..PIPELINE).map(|i| (0..(i % 64)).sum::<u64>()).sum::<u64>());

    // serde_json: parse and print a large document; the round trip must give the same text the
    // system allocator would (serde_json's output does not depend on the allocator).
    let text = document(if cfg!(miri) { 10 } else { 20_000 });
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let printed = serde_json::to_string(&parsed).unwrap();
    assert_eq!(printed, text, "serde_json round trip differs");
    let pretty = serde_json::to_string_pretty(&parsed).unwrap();
    let reparsed: serde_json::Value = serde_json::from_str(&pretty).unwrap();
    assert_eq!(reparsed, parsed);
    text.len()
}

/// Makes std allocate the calling thread's lazily allocated state before a baseline is taken:
/// its handle, and the context a blocking channel operation keeps in a thread-local (both
/// allocated the first time the thread actually blocks, which in `workload` depends on timing).
pub fn warm_up() {
    let _ = thread::current();
    let (tx, rx) = mpsc::channel::<()>();
    let sender = thread::spawn(move || {
        thread::sleep(std::time::Duration::from_millis(20));
        tx.send(()).unwrap();
    });
    rx.recv().unwrap();
    sender.join().unwrap();
}
