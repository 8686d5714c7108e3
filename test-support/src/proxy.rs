//! A TCP proxy that a test can cut and restore, to play an upstream outage (connections
//! dropped, then refused) without losing the state of the server behind it.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

/// The proxy. Dropping it stops it and closes every connection through it.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// False while cut: new connections are closed at once.
    up: Arc<AtomicBool>,
    /// Bumped on every cut, so that live connections end.
    generation: watch::Sender<u64>,
    /// The accept loop and, inside it, the connections: never read, held so that they are
    /// aborted when the proxy is dropped and no task outlives the test that started it.
    _tasks: JoinSet<()>,
}

impl Proxy {
    /// Listens on a free port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("bound address");
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(listener, target, up.clone(), generation.clone()));
        Self {
            addr,
            up,
            generation,
            _tasks: tasks,
        }
    }

    /// `http://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Accepts connections and forwards each to `target` while the proxy is up; the
/// connections live in this loop's own set, so aborting the loop ends them too.
async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else { return };
                if !up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                connections.spawn(forward(inbound, target, generation.subscribe()));
            }
            // Reap finished connections so that the set stays as small as the live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Copies both ways between `inbound` and a new connection to `target` until either side
/// closes or the proxy is cut.
async fn forward(mut inbound: TcpStream, target: SocketAddr, mut cut: watch::Receiver<u64>) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = cut.changed() => {}
    }
}
