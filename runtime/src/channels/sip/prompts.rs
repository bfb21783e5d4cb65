//! Prompt audio for calls: `say` text rendered by espeak-ng, converted to 8 kHz by sox and
//! encoded once per distinct (text, voice, language), cached on disk and in memory; admin-uploaded
//! recordings (WAV at any common rate, converted once on upload, kept in the store); hold music. Nothing here
//! runs on the RTP path: a call awaits its audio before queueing it.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::rtp::Audio;
use crate::contract::Say;
use crate::store::{Batch, Store, StoreExt, Tree};

/// Why a prompt cannot be rendered or stored.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A tool is missing.
    #[error(
        "{0} is not installed: apt-get install espeak-ng sox (Debian packages) to render voice prompts"
    )]
    MissingTool(&'static str),
    /// The tool failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// Which.
        tool: &'static str,
        /// Its complaint.
        message: String,
    },
    /// A bad id.
    #[error("a prompt id is 1-64 letters, digits, '-' or '_'; got {0:?}")]
    BadId(String),
    /// No such prompt.
    #[error("no prompt {0:?} was uploaded; upload it with PUT /v1/prompts/{0} (a WAV file)")]
    Unknown(String),
    /// Fetching a URL prompt failed.
    #[error("cannot fetch the prompt {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// Disk trouble.
    #[error("prompt storage: {0}")]
    Io(#[from] std::io::Error),
    /// The store failed.
    #[error("the store failed: {0}")]
    Store(String),
}

/// How many rendered prompts stay in memory.
const MEMORY_ENTRIES: usize = 2048;

/// Rendered and uploaded prompts.
pub struct Prompts {
    /// Rendered speech, a cache of what espeak-ng and sox make (derived, so local is fine).
    dir: PathBuf,
    /// Uploaded recordings are authoritative: they live in the store ([`Tree::Prompts`]).
    store: Arc<dyn Store>,
    memory: Mutex<HashMap<String, Arc<Audio>>>,
    /// One rendering per key at a time: concurrent calls asking for the same sentence wait
    /// for the first.
    rendering: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Looped while a caller waits in a queue.
    pub hold: Arc<Audio>,
    /// Played when a prompt cannot be rendered.
    pub beep: Arc<Audio>,
    /// Prompts that could not be rendered (the caller heard the beep).
    pub failures: std::sync::atomic::AtomicU64,
}

impl Prompts {
    /// Uploaded prompts kept in `store`, rendered ones cached under `dir`. Recordings that
    /// an older version kept under `dir/uploaded` are moved into the store once.
    pub fn new(dir: &Path, store: Arc<dyn Store>) -> Prompts {
        import_legacy_uploads(&dir.join("uploaded"), &*store);
        Prompts {
            dir: dir.to_path_buf(),
            store,
            memory: Mutex::new(HashMap::new()),
            rendering: Mutex::new(HashMap::new()),
            hold: Arc::new(Audio::from_pcm(&hold_music())),
            beep: Arc::new(Audio::from_pcm(&tone(440.0, 300, 8000.0))),
            failures: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn remembered(&self, key: &str) -> Option<Arc<Audio>> {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn remember(&self, key: String, audio: Arc<Audio>) {
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if memory.len() >= MEMORY_ENTRIES {
            memory.clear();
        }
        memory.insert(key, audio);
    }

    /// `key`'s audio from memory, disk, or `make` (run once per key at a time, off the async
    /// threads), in that order.
    async fn cached(
        &self,
        key: String,
        make: impl FnOnce() -> Result<Vec<i16>, PromptError> + Send + 'static,
    ) -> Result<Arc<Audio>, PromptError> {
        if let Some(audio) = self.remembered(&key) {
            return Ok(audio);
        }
        let gate = self
            .rendering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        if let Some(audio) = self.remembered(&key) {
            return Ok(audio);
        }
        let path = self.dir.join("rendered").join(format!("{key}.pcm"));
        let result = tokio::task::spawn_blocking(move || -> Result<Audio, PromptError> {
            if let Ok(bytes) = std::fs::read(&path) {
                return Ok(Audio::from_pcm(&from_le(&bytes)));
            }
            let samples = make()?;
            std::fs::create_dir_all(path.parent().expect("a parent"))?;
            write_atomically(&path, &to_le(&samples))?;
            Ok(Audio::from_pcm(&samples))
        })
        .await
        .map_err(|e| PromptError::Io(std::io::Error::other(e.to_string())))?;
        self.rendering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let audio = Arc::new(result?);
        self.remember(key, audio.clone());
        Ok(audio)
    }

    /// Speech for a `say`.
    pub async fn say(&self, say: &Say) -> Result<Arc<Audio>, PromptError> {
        let voices = voices(say);
        let key = hash(&["say", &say.text, &voices.join(",")]);
        let text = say.text.clone();
        self.cached(key, move || synthesise(&text, &voices)).await
    }

    /// A `play`: an uploaded prompt id, or an http(s) URL fetched once.
    pub async fn play(&self, prompt: &str) -> Result<Arc<Audio>, PromptError> {
        if prompt.starts_with("http://") || prompt.starts_with("https://") {
            let url = prompt.to_string();
            return self
                .cached(hash(&["url", prompt]), move || convert(&fetch(&url)?))
                .await;
        }
        check_id(prompt)?;
        let Some(upload) = self.upload_record(prompt)? else {
            return Err(PromptError::Unknown(prompt.into()));
        };
        let store = self.store.clone();
        let id = prompt.to_string();
        // Keyed by the upload's own id: a new upload of the same name is new audio.
        self.cached(hash(&["upload", prompt, &upload.upload]), move || {
            store
                .get(Tree::Prompts, audio_key(&id).as_bytes())
                .map_err(|e| PromptError::Store(e.to_string()))?
                .map(|b| from_le(&b))
                .ok_or(PromptError::Unknown(id))
        })
        .await
    }

    fn upload_record(&self, id: &str) -> Result<Option<Upload>, PromptError> {
        self.store
            .get_json(Tree::Prompts, &meta_key(id))
            .map_err(|e| PromptError::Store(e.to_string()))
    }

    /// Stores an uploaded recording (a WAV file), converted to 8 kHz mono once, durably.
    /// Blocking.
    pub fn upload(&self, id: &str, wav: &[u8]) -> Result<u64, PromptError> {
        check_id(id)?;
        let samples = convert(wav)?;
        let millis = samples.len() as u64 / 8;
        save_upload(&*self.store, id, &to_le(&samples), millis)?;
        Ok(millis)
    }

    /// Uploaded prompts: id and length in milliseconds.
    pub fn list(&self) -> Result<Vec<(String, u64)>, PromptError> {
        let entries = self
            .store
            .scan_prefix(Tree::Prompts, META_PREFIX.as_bytes())
            .map_err(|e| PromptError::Store(e.to_string()))?;
        Ok(entries
            .into_iter()
            .filter_map(|(k, v)| {
                let id = String::from_utf8_lossy(&k[META_PREFIX.len()..]).into_owned();
                let upload: Upload = serde_json::from_slice(&v).ok()?;
                Some((id, upload.millis))
            })
            .collect())
    }

    /// The hold music as a WAV file (8 kHz, 16-bit mono), for the webhook channels.
    pub fn hold_wav() -> Vec<u8> {
        let pcm: Vec<u8> = hold_music().iter().flat_map(|s| s.to_le_bytes()).collect();
        wav_file(&pcm)
    }

    /// An uploaded prompt as a WAV file (8 kHz, 16-bit mono), for the webhook channels.
    pub fn wav(&self, id: &str) -> Result<Vec<u8>, PromptError> {
        check_id(id)?;
        let pcm = self
            .store
            .get(Tree::Prompts, audio_key(id).as_bytes())
            .map_err(|e| PromptError::Store(e.to_string()))?
            .ok_or_else(|| PromptError::Unknown(id.into()))?;
        Ok(wav_file(&pcm))
    }
}

/// What is kept of an upload beside its audio.
#[derive(serde::Serialize, serde::Deserialize)]
struct Upload {
    /// Length in milliseconds.
    millis: u64,
    /// Unique per upload, so caches of an earlier upload of the same id are not used.
    upload: String,
}

const META_PREFIX: &str = "meta/";

fn meta_key(id: &str) -> String {
    format!("{META_PREFIX}{id}")
}

fn audio_key(id: &str) -> String {
    format!("audio/{id}")
}

fn save_upload(store: &dyn Store, id: &str, pcm: &[u8], millis: u64) -> Result<(), PromptError> {
    let store_error = |e: crate::store::StoreError| PromptError::Store(e.to_string());
    let mut batch = Batch::new();
    batch.put(Tree::Prompts, audio_key(id), pcm.to_vec());
    let upload = Upload {
        millis,
        upload: uuid::Uuid::new_v4().simple().to_string(),
    };
    batch
        .put_json(Tree::Prompts, meta_key(id), &upload)
        .map_err(store_error)?;
    store.commit(&batch).map_err(store_error)?;
    store.flush().map_err(store_error)
}

/// Moves recordings an older version kept as files into the store (once: the files are
/// removed after).
fn import_legacy_uploads(dir: &Path, store: &dyn Store) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pcm"))
        else {
            continue;
        };
        let moved = std::fs::read(&path)
            .map_err(PromptError::from)
            .and_then(|pcm| save_upload(store, id, &pcm, pcm.len() as u64 / 16))
            .and_then(|()| std::fs::remove_file(&path).map_err(PromptError::from));
        match moved {
            Ok(()) => tracing::info!(prompt = id, "uploaded recording moved into the store"),
            Err(e) => {
                tracing::error!(prompt = id, error = %e, "cannot move an uploaded recording into the store")
            }
        }
    }
}

fn check_id(id: &str) -> Result<(), PromptError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PromptError::BadId(id.into()))
    }
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// espeak-ng voices to try, best first: the action's voice, its language, English.
fn voices(say: &Say) -> Vec<String> {
    let mut out = Vec::new();
    let clean = |v: &str| {
        v.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '_'))
            .collect::<String>()
            .to_ascii_lowercase()
    };
    if let Some(v) = &say.voice {
        out.push(clean(v));
    }
    if let Some(lang) = &say.language {
        let lang = clean(lang);
        out.push(lang.clone());
        if let Some((primary, _)) = lang.split_once('-') {
            out.push(primary.to_string());
        }
    }
    out.push("en-us".into());
    out.retain(|v| !v.is_empty());
    out.dedup();
    out
}

fn synthesise(text: &str, voices: &[String]) -> Result<Vec<i16>, PromptError> {
    let mut last = None;
    for voice in voices {
        let output = Command::new("espeak-ng")
            .args(["-v", voice, "--stdout", "--", text])
            .stdin(Stdio::null())
            .output()
            .map_err(|_| PromptError::MissingTool("espeak-ng"))?;
        if output.status.success() && !output.stdout.is_empty() {
            return convert(&output.stdout);
        }
        last = Some(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    Err(PromptError::Tool {
        tool: "espeak-ng",
        message: last.unwrap_or_default(),
    })
}

/// Any audio file sox reads (WAV at any rate, mono or stereo) -> 8 kHz mono 16-bit samples.
fn convert(file: &[u8]) -> Result<Vec<i16>, PromptError> {
    let mut child = Command::new("sox")
        .args([
            "-V1",
            "-",
            "-t",
            "raw",
            "-r",
            "8000",
            "-c",
            "1",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "-L",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|_| PromptError::MissingTool("sox"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = file.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output()?;
    let _ = writer.join();
    if !output.status.success() || output.stdout.is_empty() {
        return Err(PromptError::Tool {
            tool: "sox",
            message: format!(
                "cannot read the audio ({}); upload a WAV file",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(from_le(&output.stdout))
}

fn fetch(url: &str) -> Result<Vec<u8>, PromptError> {
    let fail = |message: String| PromptError::Fetch {
        url: url.to_string(),
        message,
    };
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    response
        .body_mut()
        .with_config()
        .limit(32 << 20)
        .read_to_vec()
        .map_err(|e| fail(e.to_string()))
}

fn from_le(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn to_le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn wav_file(pcm: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + pcm.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    out.extend_from_slice(pcm);
    out
}

fn tone(freq: f32, millis: u32, rate: f32) -> Vec<i16> {
    let n = (rate * millis as f32 / 1000.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate;
            let fade = ((i.min(n - i) as f32) / 200.0).min(1.0);
            (f32::sin(2.0 * std::f32::consts::PI * freq * t) * 6000.0 * fade) as i16
        })
        .collect()
}

/// A calm four-chord loop (8 s), so a waiting caller knows the line is alive.
fn hold_music() -> Vec<i16> {
    let chords: [[f32; 3]; 4] = [
        [261.6, 329.6, 392.0],
        [220.0, 261.6, 329.6],
        [174.6, 220.0, 261.6],
        [196.0, 246.9, 293.7],
    ];
    let mut out = Vec::new();
    for chord in chords {
        let n = 16_000;
        for i in 0..n {
            let t = i as f32 / 8000.0;
            let envelope = (i.min(n - i) as f32 / 800.0).min(1.0);
            let sum: f32 = chord
                .iter()
                .map(|f| f32::sin(2.0 * std::f32::consts::PI * f * t))
                .sum();
            out.push((sum / 3.0 * 5000.0 * envelope) as i16);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_fall_back_to_the_language_then_english() {
        let say = Say {
            text: "Bonjour".into(),
            voice: None,
            language: Some("fr-FR".into()),
        };
        assert_eq!(voices(&say), ["fr-fr", "fr", "en-us"]);
        let say = Say {
            text: "x".into(),
            voice: Some("en-gb; rm -rf /".into()),
            language: None,
        };
        assert_eq!(voices(&say), ["en-gbrm-rf", "en-us"]);
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("welcome_2").is_ok());
        for bad in ["", "../x", "a b", &"x".repeat(65)] {
            assert!(check_id(bad).is_err());
        }
    }
}
