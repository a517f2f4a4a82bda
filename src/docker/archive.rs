//! The tar archive that copies secrets and configs given by content into a container.

use std::collections::BTreeSet;

use crate::model::Secret;

/// A tar archive (ustar) holding `files` (absolute paths in the container, mode 0444) and
/// their parent directories (0755), to extract at `/`.
pub(super) fn tar_archive(files: &[(String, Secret)]) -> Vec<u8> {
    fn header(path: &str, mode: u32, size: usize, dir: bool) -> [u8; 512] {
        let mut h = [0u8; 512];
        // Paths longer than 100 bytes are split at a `/` into prefix (155) and name (100).
        let (prefix, name) = if path.len() > 100 {
            let from = path.len() - 100;
            match path[from..].find('/') {
                Some(i) => (&path[..from + i], &path[from + i + 1..]),
                None => ("", path),
            }
        } else {
            ("", path)
        };
        let put = |h: &mut [u8; 512], at: usize, len: usize, v: &[u8]| {
            let n = v.len().min(len);
            h[at..at + n].copy_from_slice(&v[..n]);
        };
        put(&mut h, 0, 100, name.as_bytes());
        put(&mut h, 100, 8, format!("{mode:07o}\0").as_bytes());
        put(&mut h, 108, 8, b"0000000\0");
        put(&mut h, 116, 8, b"0000000\0");
        put(&mut h, 124, 12, format!("{size:011o}\0").as_bytes());
        put(&mut h, 136, 12, b"00000000000\0");
        put(&mut h, 148, 8, b"        ");
        h[156] = if dir { b'5' } else { b'0' };
        put(&mut h, 257, 6, b"ustar\0");
        put(&mut h, 263, 2, b"00");
        put(&mut h, 345, 155, prefix.as_bytes());
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
        h
    }
    let mut out = Vec::new();
    let mut dirs = BTreeSet::new();
    for (path, _) in files {
        let rel = path.trim_start_matches('/');
        let parts: Vec<&str> = rel.split('/').collect();
        let mut acc = String::new();
        for part in &parts[..parts.len().saturating_sub(1)] {
            acc.push_str(part);
            acc.push('/');
            if dirs.insert(acc.clone()) {
                out.extend_from_slice(&header(&acc, 0o755, 0, true));
            }
        }
    }
    for (path, content) in files {
        let data = content.expose().as_bytes();
        out.extend_from_slice(&header(
            path.trim_start_matches('/'),
            0o444,
            data.len(),
            false,
        ));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}
