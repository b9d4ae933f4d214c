//! The child process of the expiry-storm scenario: runs the [`StormJob`] given as JSON in
//! its first argument (see `stent_reliability::storm`).

use stent_reliability::storm::StormJob;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let arg = std::env::args()
        .nth(1)
        .expect("usage: stent-reliability-storm '<job as JSON>'");
    let job: StormJob = serde_json::from_str(&arg).unwrap_or_else(|e| panic!("not a job: {e}"));
    job.run().await;
}
