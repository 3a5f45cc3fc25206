//! `bench_tool calculate --listen IP:PORT --name NAME`: a minimal stand-in for a simulated VM's
//! workload. One thread, blocking I/O, no runtime: it reads a request head and answers
//! `200 {"status":"ok"}` with `Connection: close`. The simulator kills it with SIGKILL.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use anyhow::Context;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut listen = None;
    let mut name = String::from("stub");
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => listen = it.next().cloned(),
            "--name" => name = it.next().cloned().unwrap_or_default(),
            // `--workers N` and anything else the real workload takes: ignored.
            _ => {}
        }
    }
    let listen = listen.context("--listen IP:PORT is required")?;
    let listener = TcpListener::bind(&listen).with_context(|| format!("cannot bind {listen}"))?;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\
         x-served-by: {name}\r\nconnection: close\r\n\r\n{{\"status\":\"ok\"}}\n"
    );
    let mut buf = [0u8; 4096];
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        let mut len = 0;
        while len < buf.len() {
            match stream.read(&mut buf[len..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
        // A bare TCP connect (probe without a path) sends nothing: answering does no harm.
        let _ = stream.write_all(response.as_bytes());
    }
    Ok(())
}
