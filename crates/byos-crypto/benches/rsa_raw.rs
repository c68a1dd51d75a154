//! The raw aws-lc-rs RSA-2048 rates Key Vault operations are compared with: RSA-OAEP-256 wrap
//! (public key) and unwrap (private key), on every core, no HTTP, no TLS, no authorization.
//! Run: `cargo bench -p byos-crypto --bench rsa_raw` (BENCH_SECONDS per measure, default 3).

use std::time::{Duration, Instant};

use byos_crypto::vault_keys::{RsaEncryption, RsaKey};

fn rate(threads: usize, duration: Duration, op: impl Fn() + Sync) -> f64 {
    let start = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < duration {
                        op();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let key = RsaKey::generate(2048)?;
    let data_key = [7u8; 32];
    let wrapped = key.encrypt(RsaEncryption::Oaep256, &data_key)?;
    let duration = Duration::from_secs(seconds);
    let wrap = rate(threads, duration, || {
        let _ = key.encrypt(RsaEncryption::Oaep256, &data_key);
    });
    let unwrap = rate(threads, duration, || {
        let _ = key.decrypt(RsaEncryption::Oaep256, &wrapped);
    });
    println!("raw aws-lc-rs RSA-2048 RSA-OAEP-256 on {threads} threads: wrap {wrap:.0}/s, unwrap {unwrap:.0}/s");
    Ok(())
}
