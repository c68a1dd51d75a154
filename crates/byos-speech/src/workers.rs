//! Engines run in worker processes, supervised: a crash or a hang fails the job it was doing (with
//! a clear error) and the worker is replaced; the server never goes down with an engine.
//!
//! A [`WorkerPool`] keeps `size` processes of one command, each loading its engine once, and a
//! bounded queue of jobs (full: [`PoolError::Busy`], which services answer 429 with `Retry-After`).
//! The protocol over a worker's stdin/stdout is one frame per message, the same both ways:
//! a status byte (0 ok, 1 error), a 4-byte big-endian length, the body. [`serve`] is the worker's
//! side.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

/// The largest frame either side sends (a minute of 16 kHz 16-bit stereo, with room to spare).
pub const MAX_FRAME: usize = 64 << 20;
const OK: u8 = 0;
const ERROR: u8 = 1;

/// The program (and arguments) a worker process runs.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
}

/// Why a job did not give a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every worker is busy and the queue is full.
    #[error("the engine is busy; retry later")]
    Busy,
    /// The worker died while it had the job (it is replaced).
    #[error("the engine worker crashed: {0}")]
    Crashed(String),
    /// The worker took longer than the job timeout (it is killed and replaced).
    #[error("the engine worker did not answer within {0:?}")]
    TimedOut(Duration),
    /// The engine refused the job (bad input): the worker is fine.
    #[error("{0}")]
    Failed(String),
    /// The pool is gone (the server is stopping).
    #[error("the engine pool is stopped")]
    Stopped,
}

struct Job {
    request: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>, PoolError>>,
}

/// A supervised pool of worker processes running one engine.
pub struct WorkerPool {
    jobs: mpsc::Sender<Job>,
    size: usize,
    /// Jobs queued or running.
    pending: Arc<AtomicUsize>,
}

impl WorkerPool {
    /// Starts `size` workers of `command` (each started lazily, on its first job) with a queue of
    /// `queue` waiting jobs; a job taking longer than `timeout` kills its worker.
    pub fn start(command: WorkerCommand, size: usize, queue: usize, timeout: Duration) -> Self {
        let (jobs, receiver) = mpsc::channel::<Job>(queue.max(1));
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let pending = Arc::new(AtomicUsize::new(0));
        for slot in 0..size.max(1) {
            let (command, receiver) = (command.clone(), Arc::clone(&receiver));
            let pending = Arc::clone(&pending);
            tokio::spawn(async move {
                let mut worker = Slot { command, process: None, slot };
                loop {
                    let job = receiver.lock().await.recv().await;
                    let Some(job) = job else { return };
                    let outcome = worker.run(&job.request, timeout).await;
                    pending.fetch_sub(1, Ordering::Relaxed);
                    // The caller may have given up; its answer has nowhere to go.
                    let _ = job.reply.send(outcome);
                }
            });
        }
        WorkerPool { jobs, size: size.max(1), pending }
    }

    /// Runs one job on the next free worker.
    pub async fn run(&self, request: Vec<u8>) -> Result<Vec<u8>, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.jobs.try_send(Job { request, reply }).map_err(|e| {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => PoolError::Busy,
                mpsc::error::TrySendError::Closed(_) => PoolError::Stopped,
            }
        })?;
        answer.await.unwrap_or(Err(PoolError::Stopped))
    }

    /// Runs one job only if a worker is idle now, else [`PoolError::Busy`]: work that is worth
    /// doing only on spare capacity (a live recognition's partial results), so that it never
    /// delays jobs that must be done.
    pub async fn run_spare(&self, request: Vec<u8>) -> Result<Vec<u8>, PoolError> {
        if self.pending.load(Ordering::Relaxed) >= self.size {
            return Err(PoolError::Busy);
        }
        self.run(request).await
    }

    /// Runs one job, waiting for room in the queue rather than answering [`PoolError::Busy`]
    /// (background work, such as batch transcription, which has no client to tell to retry).
    pub async fn run_waiting(&self, request: Vec<u8>) -> Result<Vec<u8>, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.pending.fetch_add(1, Ordering::Relaxed);
        if self.jobs.send(Job { request, reply }).await.is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(PoolError::Stopped);
        }
        answer.await.unwrap_or(Err(PoolError::Stopped))
    }
}

/// A running worker process.
struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

/// One place in the pool and the process in it (started when needed, replaced after a failure).
struct Slot {
    command: WorkerCommand,
    process: Option<Process>,
    slot: usize,
}

impl Slot {
    fn spawn(&self) -> Result<Process, PoolError> {
        let mut child = Command::new(&self.command.program)
            .args(&self.command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PoolError::Crashed(format!("the worker could not be started: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(PoolError::Crashed("the worker has no pipes".into()));
        };
        tracing::info!(slot = self.slot, program = %self.command.program.display(), "engine worker started");
        Ok(Process { child, stdin, stdout })
    }

    async fn run(&mut self, request: &[u8], timeout: Duration) -> Result<Vec<u8>, PoolError> {
        let mut process = match self.process.take() {
            Some(process) => process,
            None => self.spawn()?,
        };
        let exchange = async {
            write_frame_async(&mut process.stdin, OK, request).await?;
            read_frame_async(&mut process.stdout).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((OK, body))) => {
                self.process = Some(process);
                Ok(body)
            }
            Ok(Ok((_, body))) => {
                self.process = Some(process);
                Err(PoolError::Failed(String::from_utf8_lossy(&body).into_owned()))
            }
            Ok(Err(e)) => {
                let status = process.child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                tracing::warn!(slot = self.slot, error = %e, %status, "engine worker crashed; it will be replaced");
                Err(PoolError::Crashed(format!("{e} ({status})")))
            }
            Err(_) => {
                tracing::warn!(slot = self.slot, ?timeout, "engine worker hung; killed, it will be replaced");
                if let Err(e) = process.child.kill().await {
                    tracing::warn!(slot = self.slot, error = %e, "killing the hung worker failed");
                }
                Err(PoolError::TimedOut(timeout))
            }
        }
    }
}

async fn write_frame_async(to: &mut ChildStdin, status: u8, body: &[u8]) -> std::io::Result<()> {
    to.write_all(&frame_header(status, body.len())?).await?;
    to.write_all(body).await?;
    to.flush().await
}

async fn read_frame_async(from: &mut ChildStdout) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    from.read_exact(&mut header).await?;
    let len = frame_len(&header)?;
    let mut body = vec![0u8; len];
    from.read_exact(&mut body).await?;
    Ok((header[0], body))
}

fn frame_header(status: u8, len: usize) -> std::io::Result<[u8; 5]> {
    let len = u32::try_from(len).ok().filter(|l| *l as usize <= MAX_FRAME).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("a frame of {len} bytes is too large"))
    })?;
    let mut header = [status, 0, 0, 0, 0];
    header[1..].copy_from_slice(&len.to_be_bytes());
    Ok(header)
}

fn frame_len(header: &[u8; 5]) -> std::io::Result<usize> {
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is too large"),
        ));
    }
    Ok(len)
}

/// The worker's side: answers every request frame on stdin with `handle`'s result on stdout, until
/// stdin closes. Errors of `handle` go back as error frames (the job failed, the worker lives on).
pub fn serve(handle: impl FnMut(&[u8]) -> Result<Vec<u8>, String>) -> std::io::Result<()> {
    serve_on(std::io::stdin().lock(), std::io::stdout().lock(), handle)
}

/// [`serve`] over any pipe pair.
pub fn serve_on(
    mut input: impl Read,
    mut output: impl Write,
    mut handle: impl FnMut(&[u8]) -> Result<Vec<u8>, String>,
) -> std::io::Result<()> {
    loop {
        let mut header = [0u8; 5];
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut body = vec![0u8; frame_len(&header)?];
        input.read_exact(&mut body)?;
        let (status, answer) = match handle(&body) {
            Ok(answer) => (OK, answer),
            Err(message) => (ERROR, message.into_bytes()),
        };
        output.write_all(&frame_header(status, answer.len())?)?;
        output.write_all(&answer)?;
        output.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker that is a shell command (real processes: `cat` answers each frame with itself).
    fn shell(script: &str) -> WorkerCommand {
        WorkerCommand { program: "/bin/sh".into(), args: vec!["-c".into(), script.into()] }
    }

    #[tokio::test]
    async fn a_worker_answers_jobs_and_keeps_running() {
        let pool = WorkerPool::start(shell("exec cat"), 1, 4, Duration::from_secs(5));
        for n in 0..3u8 {
            assert_eq!(pool.run(vec![n; 10]).await, Ok(vec![n; 10]));
        }
    }

    #[tokio::test]
    async fn a_crashed_worker_fails_its_job_and_is_replaced() {
        // Answers one job, then dies on the next; every new process does the same.
        let script = "head -c 7 | head -c 7; exit 3";
        let pool = WorkerPool::start(shell(script), 1, 4, Duration::from_secs(5));
        assert_eq!(pool.run(b"ab".to_vec()).await, Ok(b"ab".to_vec()));
        assert!(matches!(pool.run(b"cd".to_vec()).await, Err(PoolError::Crashed(_))));
        assert_eq!(pool.run(b"ef".to_vec()).await, Ok(b"ef".to_vec()), "a new worker took the next job");
    }

    #[tokio::test]
    async fn a_hung_worker_is_killed_and_replaced() {
        // Hangs on its first job only (a marker file remembers that it already did).
        let marker = std::env::temp_dir().join(format!("byos-hang-{}", std::process::id()));
        let script = format!("if [ -e {0} ]; then exec cat; else touch {0}; exec sleep 60; fi", marker.display());
        let pool = WorkerPool::start(shell(&script), 1, 4, Duration::from_millis(300));
        assert_eq!(pool.run(b"x".to_vec()).await, Err(PoolError::TimedOut(Duration::from_millis(300))));
        assert_eq!(pool.run(b"y".to_vec()).await, Ok(b"y".to_vec()));
        let _ = std::fs::remove_file(marker);
    }

    #[tokio::test]
    async fn a_full_queue_is_busy() {
        let pool = WorkerPool::start(shell("exec sleep 60"), 1, 1, Duration::from_secs(30));
        let pool = Arc::new(pool);
        let first = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(b"1".to_vec()).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(b"2".to_vec()).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(pool.run(b"3".to_vec()).await, Err(PoolError::Busy));
        first.abort();
        second.abort();
    }

    #[tokio::test]
    async fn spare_work_runs_only_on_an_idle_worker() {
        let pool = Arc::new(WorkerPool::start(shell("exec cat"), 1, 4, Duration::from_secs(30)));
        assert_eq!(pool.run_spare(b"idle".to_vec()).await, Ok(b"idle".to_vec()));
        let hung = Arc::new(WorkerPool::start(shell("exec sleep 60"), 1, 4, Duration::from_secs(30)));
        let first = tokio::spawn({
            let hung = Arc::clone(&hung);
            async move { hung.run(b"1".to_vec()).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(hung.run_spare(b"2".to_vec()).await, Err(PoolError::Busy), "the only worker is busy");
        first.abort();
    }

    #[test]
    fn the_worker_side_answers_each_frame_and_reports_refusals() -> std::io::Result<()> {
        let mut input = Vec::new();
        for body in [&b"upper"[..], b"", b"fail"] {
            input.extend_from_slice(&frame_header(OK, body.len())?);
            input.extend_from_slice(body);
        }
        let mut output = Vec::new();
        serve_on(&input[..], &mut output, |body| match body {
            b"fail" => Err("refused".into()),
            other => Ok(other.to_ascii_uppercase()),
        })?;
        let mut expected = Vec::new();
        for (status, body) in [(OK, &b"UPPER"[..]), (OK, b""), (ERROR, b"refused")] {
            expected.extend_from_slice(&frame_header(status, body.len())?);
            expected.extend_from_slice(body);
        }
        assert_eq!(output, expected);
        Ok(())
    }

    #[test]
    fn frames_over_the_limit_are_refused() {
        assert!(frame_header(OK, MAX_FRAME + 1).is_err());
        let mut header = [OK, 0, 0, 0, 0];
        header[1..].copy_from_slice(&(MAX_FRAME as u32 + 1).to_be_bytes());
        assert!(frame_len(&header).is_err());
    }
}
