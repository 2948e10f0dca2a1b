//! `echo`: the baseline server. A minimal blocking echo — one thread per connection, read a
//! header, read the payload, write the `Pong` — speaking the same frames as the master, so
//! `ping` against it measures the loopback and syscall floor on the same machine in the same run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use anyhow::Context;
use clap::Args;
use titan_proto::{Header, OpCode, HEADER_LEN};

#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Address to listen on (port 0 picks a free port; the ready line shows it).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: String,
}

pub fn run(args: EchoArgs) -> anyhow::Result<bool> {
    let listener =
        TcpListener::bind(&args.addr).with_context(|| format!("binding {}", args.addr))?;
    println!("echo ready on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        thread::spawn(move || serve(stream));
    }
    Ok(true)
}

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    loop {
        stream.read_exact(&mut header)?;
        let parsed = Header::decode(&header, titan_proto::limits::MAX_FRAME_LEN)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        payload.resize(parsed.len as usize, 0);
        stream.read_exact(&mut payload)?;
        let mut reply = Header::new(OpCode::Pong, parsed.len).encode().to_vec();
        reply.extend_from_slice(&payload);
        stream.write_all(&reply)?;
    }
}
