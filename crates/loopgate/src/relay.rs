//! `loopgate latency-relay` (hidden, for benchmarks): a TCP relay that
//! holds every byte for a fixed time in each direction, so that servers on
//! one machine reach their database as over a network (`scripts/pg-bench.sh`
//! with `PG_RTT`). The delay is added, not a rate: pipelined traffic flows
//! at full speed, each chunk arriving `delay` after it was read.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Where to listen (`127.0.0.1:0` picks a port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Where to relay to, e.g. `127.0.0.1:5432`.
    #[arg(long)]
    to: String,
    /// Round-trip time to add, e.g. `1ms` (half of it each way).
    #[arg(long, default_value = "1ms")]
    rtt: String,
}

pub(crate) async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let rtt = loopgate_core::duration::parse(&args.rtt)
        .with_context(|| format!("--rtt: `{}` is not a duration (e.g. 1ms)", args.rtt))?;
    let one_way = rtt / 2;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    out!("relay listening on {}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        let to = args.to.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&to).await {
                Ok(server) => {
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pipe(client_read, server_write, one_way));
                    tokio::spawn(pipe(server_read, client_write, one_way));
                }
                Err(error) => tracing::warn!(%error, to, "the relay cannot reach its target"),
            }
        });
    }
}

/// Copies `from` to `to`, each chunk leaving `delay` after it arrived.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (send, mut receive) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        let mut pending: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        loop {
            if pending.is_empty() {
                match receive.recv().await {
                    Some(chunk) => pending.push_back(chunk),
                    None => break,
                }
            }
            while let Ok(chunk) = receive.try_recv() {
                pending.push_back(chunk);
            }
            if let Some((due, _)) = pending.front() {
                tokio::time::sleep_until(*due).await;
            }
            // Everything due by now goes out in one write.
            let now = Instant::now();
            let mut out = Vec::new();
            while pending.front().is_some_and(|(due, _)| *due <= now) {
                if let Some((_, bytes)) = pending.pop_front() {
                    out.extend_from_slice(&bytes);
                }
            }
            if to.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if send
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(send);
    let _ = writer.await;
}
