//! A small pool of synchronous connections: opened on demand up to a maximum, handed out one per
//! call, and dropped instead of reused once they are closed or failed below the SQL level.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use permgate_core::ports::{StoreError, StoreResult};
use postgres::{Client, Config, NoTls};

/// How long a caller waits for a busy pool before giving up.
const CHECKOUT_WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Pool {
    config: Config,
    /// The URL without its password, for messages.
    target: String,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Client>,
    /// Connections that exist: idle ones plus those handed out.
    open: usize,
}

impl Pool {
    pub(crate) fn new(config: Config, target: String, max: usize) -> Pool {
        Pool { config, target, max, state: Mutex::new(State { idle: Vec::new(), open: 0 }), freed: Condvar::new() }
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Opens a connection outside the pool (the pool's first one, and the LISTEN connection).
    pub(crate) fn connect(&self) -> StoreResult<Client> {
        self.config.connect(NoTls).map_err(|e| {
            StoreError::Backend(format!("cannot connect to PostgreSQL at {}: {}", self.target, crate::describe(&e)))
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection opened by [`Pool::connect`] to the idle ones.
    pub(crate) fn adopt(&self, client: Client) {
        let mut state = self.lock();
        state.open += 1;
        state.idle.push(client);
    }

    /// An idle connection, a new one if fewer than the maximum exist, or the next one returned.
    pub(crate) fn get(&self) -> StoreResult<Conn<'_>> {
        let mut state = self.lock();
        loop {
            if let Some(client) = state.idle.pop() {
                return Ok(Conn { pool: self, client: Some(client), lost: false });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(client) => Ok(Conn { pool: self, client: Some(client), lost: false }),
                    Err(e) => {
                        self.forget_one();
                        Err(e)
                    }
                };
            }
            let (next, wait) = self.freed.wait_timeout(state, CHECKOUT_WAIT).unwrap_or_else(PoisonError::into_inner);
            state = next;
            if wait.timed_out() && state.idle.is_empty() && state.open >= self.max {
                return Err(StoreError::Backend(format!(
                    "all {} connections to PostgreSQL stayed busy for {CHECKOUT_WAIT:?}",
                    self.max
                )));
            }
        }
    }

    /// Closes every idle connection: after one was found dead, its siblings most likely are too
    /// (a database restart, a failover, an administrator cutting connections).
    pub(crate) fn discard_idle(&self) {
        let dead = self.take_idle();
        self.freed.notify_all();
        // Dropping a client says goodbye to the server; do it outside the lock.
        drop(dead);
    }

    /// Takes every idle connection out of the pool, for closing elsewhere.
    pub(crate) fn take_idle(&self) -> Vec<Client> {
        let mut state = self.lock();
        let idle = std::mem::take(&mut state.idle);
        state.open -= idle.len();
        idle
    }

    fn forget_one(&self) {
        self.lock().open -= 1;
        self.freed.notify_one();
    }

    fn give_back(&self, client: Client) {
        self.lock().idle.push(client);
        self.freed.notify_one();
    }
}

/// A connection on loan; it goes back to the pool when dropped unless it was marked lost.
pub(crate) struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    lost: bool,
}

impl Conn<'_> {
    /// The connection. `None` only after the loan ended, which cannot be observed from outside.
    pub(crate) fn client(&mut self) -> StoreResult<&mut Client> {
        self.client.as_mut().ok_or_else(|| StoreError::Backend("a pooled connection was used after release".into()))
    }

    /// Whether `e`, raised on this connection, means the connection itself is gone; if so it is
    /// not given back to the pool.
    pub(crate) fn check_lost(&mut self, e: &postgres::Error) -> bool {
        let closed = self.client.as_ref().is_none_or(Client::is_closed);
        if closed || crate::connection_lost(e) {
            self.lost = true;
        }
        self.lost
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if self.lost || client.is_closed() {
                drop(client);
                self.pool.forget_one();
            } else {
                self.pool.give_back(client);
            }
        }
    }
}
