//! `loopgate latency-relay` (hidden, for benchmarks): a TCP relay that
//! holds every byte for a fixed time in each direction, so that servers on
//! one machine reach their database as over a network (`scripts/pg-bench.sh`
//! with `PG_RTT`). The delay is added, not a rate: pipelined traffic flows
//! at full speed, each chunk arriving `delay` after it was read.
//!
//! Each direction of each connection has two threads of its own, one
//! reading and one writing, and the writer sleeps with the operating
//! system's timer: an async timer rounds up to whole milliseconds, which
//! would turn a 1 ms round trip into 2 to 3.

use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

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

pub(crate) fn run(args: &RelayArgs) -> anyhow::Result<()> {
    let rtt = loopgate_core::duration::parse(&args.rtt)
        .with_context(|| format!("--rtt: `{}` is not a duration (e.g. 1ms)", args.rtt))?;
    let one_way = rtt / 2;
    let listener = TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    out!("relay listening on {}", listener.local_addr()?);
    for client in listener.incoming() {
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "the relay could not accept a connection");
                continue;
            }
        };
        match TcpStream::connect(&args.to) {
            Ok(server) => {
                if let Err(error) = relay(client, server, one_way) {
                    tracing::warn!(%error, "the relay could not start a connection");
                }
            }
            Err(error) => tracing::warn!(%error, to = args.to, "the relay cannot reach its target"),
        }
    }
    Ok(())
}

/// Starts both directions of one connection.
fn relay(client: TcpStream, server: TcpStream, delay: Duration) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_out, server_out) = (client.try_clone()?, server.try_clone()?);
    pipe(client, server_out, delay)?;
    pipe(server, client_out, delay)
}

/// Copies `from` to `to` on two threads, each chunk leaving `delay` after
/// it arrived.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> std::io::Result<()> {
    let (send, receive) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::Builder::new()
        .name("relay-write".to_owned())
        .spawn(move || {
            let mut pending: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
            loop {
                if pending.is_empty() {
                    match receive.recv() {
                        Ok(chunk) => pending.push_back(chunk),
                        Err(_) => break,
                    }
                }
                pending.extend(receive.try_iter());
                if let Some((due, _)) = pending.front() {
                    let now = Instant::now();
                    if now < *due {
                        std::thread::sleep(*due - now);
                    }
                }
                // Everything due by now goes out in one write.
                let now = Instant::now();
                let mut out = Vec::new();
                while pending.front().is_some_and(|(due, _)| *due <= now) {
                    if let Some((_, bytes)) = pending.pop_front() {
                        out.extend_from_slice(&bytes);
                    }
                }
                if to.write_all(&out).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })?;
    std::thread::Builder::new()
        .name("relay-read".to_owned())
        .spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buffer) {
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
        })?;
    Ok(())
}
