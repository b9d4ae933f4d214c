//! The child process of the reliability scenarios: runs the [`Job`] given as JSON in its
//! first argument and reports on stdout (see `stent_reliability::job`).

use stent_reliability::Job;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let arg = std::env::args()
        .nth(1)
        .expect("usage: stent-reliability-worker '<job as JSON>'");
    let job: Job = serde_json::from_str(&arg).unwrap_or_else(|e| panic!("not a job: {e}"));
    job.run().await;
}
