//! A TCP proxy the test controls: cut it to simulate an outage between leadlink and a
//! service without disturbing other tests that use the same service, or make it swallow
//! bytes (a service that accepts connections but never answers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    swallowing: Arc<AtomicBool>,
    connections: Arc<Mutex<CancellationToken>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let swallowing = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(CancellationToken::new()));
        let (up2, swallowing2, connections2) =
            (up.clone(), swallowing.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let token = connections2.lock().await.clone();
                if swallowing2.load(Ordering::SeqCst) {
                    tokio::spawn(async move {
                        let mut sink = tokio::io::sink();
                        tokio::select! {
                            _ = token.cancelled() => {}
                            _ = tokio::io::copy(&mut inbound, &mut sink) => {}
                        }
                    });
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            swallowing,
            connections,
        }
    }

    /// Drops every open connection; new ones are accepted and read, never answered.
    pub async fn swallow(&self) {
        self.swallowing.store(true, Ordering::SeqCst);
        self.drop_connections().await;
    }

    async fn drop_connections(&self) {
        let mut token = self.connections.lock().await;
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Drops every open connection and refuses new ones until `restore`.
    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.drop_connections().await;
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Forwards again; the connections it swallowed are dropped.
    pub async fn stop_swallowing(&self) {
        self.swallowing.store(false, Ordering::SeqCst);
        self.drop_connections().await;
    }
}
