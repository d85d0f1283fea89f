//! Server processes seen through /proc: resident memory, CPU time, children, the fd limit.

use std::process::Command;
use std::sync::OnceLock;

/// VmRSS of `pid` in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sum of the VmRSS of `pids` in KiB (`None` when one of them is gone).
pub(crate) fn rss_sum_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| rss_kib(p)).sum()
}

/// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`, 100 when unknown).
fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// `(user, system)` CPU time of `pid` in µs.
pub(crate) fn cpu_us(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut f = after.split_whitespace();
    // After ')': state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let us = 1_000_000 / clk_tck();
    Some((utime * us, stime * us))
}

/// Total CPU time of `pids` in µs: `(user, system)`.
pub(crate) fn cpu_sum_us(pids: &[u32]) -> Option<(u64, u64)> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold((0, 0), |(u, s), &p| {
        let (pu, ps) = cpu_us(p)?;
        Some((u + pu, s + ps))
    })
}

/// The child processes of `pid` (nginx's workers under its master).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The soft limit on open files of this process.
pub(crate) fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Warns when `needed` open files exceed the soft limit.
pub(crate) fn check_nofile(needed: u64) {
    if let Some(limit) = nofile_limit()
        && needed > limit
    {
        eprintln!(
            "warning: {needed} open files needed but the limit is {limit} (run `ulimit -n 20000` first)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        assert!(rss_sum_kib(&[me]).is_some());
        assert!(rss_sum_kib(&[]).is_none());
        assert!(cpu_us(me).is_some());
        assert!(cpu_sum_us(&[]).is_none());
        assert!(nofile_limit().is_some_and(|n| n > 0));
        assert_eq!(rss_kib(u32::MAX), None);
        assert!(children(u32::MAX).is_empty());
    }
}
