//! The physical ceiling: one plain TCP sender and receiver over loopback.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

/// Bytes per second one TCP connection carries over loopback for `duration`.
pub fn measure(duration: Duration) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut socket, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let start = Instant::now();
        loop {
            match socket.read(&mut buf)? {
                0 => return Ok((total, start.elapsed())),
                n => total += n as u64,
            }
        }
    });
    let mut sender = TcpStream::connect(addr)?;
    let chunk = vec![0x5au8; 128 * 1024];
    let start = Instant::now();
    while start.elapsed() < duration {
        sender.write_all(&chunk)?;
    }
    drop(sender);
    let (bytes, elapsed) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("loopback receiver panicked"))??;
    Ok(bytes as f64 / elapsed.as_secs_f64())
}
