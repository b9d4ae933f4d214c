//! What reaches the server, counted on the wire: a proxy between a store and PostgreSQL
//! that reads the frontend protocol and notes, for each round trip (each `Sync`, or a
//! simple `Query`), the statements executed in it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The round trips that went through a [`Wire`]: each the texts of the statements executed
/// in it (none for a statement prepared, or a ping).
pub(crate) type Trips = Arc<Mutex<Vec<Vec<String>>>>;

/// A proxy on a port of its own to the server at `server`.
pub(crate) struct Wire {
    pub(crate) addr: SocketAddr,
    pub(crate) trips: Trips,
}

impl Wire {
    pub(crate) async fn start(server: SocketAddr) -> Wire {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let trips = Trips::default();
        let counted = Arc::clone(&trips);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(server).await.unwrap();
                tokio::spawn(relay(client, server, Arc::clone(&counted)));
            }
        });
        Wire { addr, trips }
    }

    /// The round trips since the last call.
    pub(crate) fn take(&self) -> Vec<Vec<String>> {
        std::mem::take(&mut *self.trips.lock().unwrap())
    }
}

/// Forwards the server's bytes as they are, and the client's message by message, noting
/// its round trips.
async fn relay(client: TcpStream, server: TcpStream, trips: Trips) -> std::io::Result<()> {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
    // The startup messages have no type byte; an SSL or GSS request comes before the last.
    loop {
        let len = from_client.read_u32().await?;
        let mut body = vec![0; len as usize - 4];
        from_client.read_exact(&mut body).await?;
        to_server.write_all(&len.to_be_bytes()).await?;
        to_server.write_all(&body).await?;
        if !matches!(body[..4], [0x04, 0xd2, 0x16, 0x2f | 0x30]) {
            break;
        }
    }
    let mut prepared: HashMap<String, String> = HashMap::new();
    let mut executed = Vec::new();
    loop {
        let kind = from_client.read_u8().await?;
        let len = from_client.read_u32().await?;
        let mut body = vec![0; len as usize - 4];
        from_client.read_exact(&mut body).await?;
        let mut fields = body
            .split(|&b| b == 0)
            .map(|f| String::from_utf8_lossy(f).into_owned());
        match kind {
            b'P' => {
                let name = fields.next().unwrap_or_default();
                prepared.insert(name, fields.next().unwrap_or_default());
            }
            b'B' => {
                let _portal = fields.next();
                let name = fields.next().unwrap_or_default();
                executed.push(prepared.get(&name).cloned().unwrap_or_default());
            }
            b'S' => trips.lock().unwrap().push(std::mem::take(&mut executed)),
            b'Q' => trips
                .lock()
                .unwrap()
                .push(vec![fields.next().unwrap_or_default()]),
            _ => {}
        }
        to_server.write_u8(kind).await?;
        to_server.write_all(&len.to_be_bytes()).await?;
        to_server.write_all(&body).await?;
    }
}
