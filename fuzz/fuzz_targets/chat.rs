//! Any text a web chat visitor or an agent's desk sends on its socket: read as a message or
//! refused with a code (`invalid_json`, `unknown_message`), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_wire::chat;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for refusal in [
        chat::visitor_message(text).err(),
        chat::desk_message(text).err(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(matches!(refusal.code, "invalid_json" | "unknown_message"));
        assert!(!refusal.message.is_empty());
    }
});
