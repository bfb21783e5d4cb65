//! Any bytes a sender may hand the SMTP receiver or a provider may post to the inbound
//! webhook: read as a mail (sender, subject, text, attachments, thread, robot) or as what could
//! be read of it, never a panic; and what is built from such a mail (the reply's subject, the
//! quote, the plus-address, an SMTP path) never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte says whether the envelope's sender was null (a bounce).
    let (flag, raw) = data.split_first().unwrap_or((&0, data));
    let mail = switchboard_mail::read(raw, flag & 1 == 1);
    for part in &mail.attachments {
        assert!(!part.name.is_empty(), "every attachment has a name");
    }
    let _ = switchboard_mail::reply_subject(&mail.subject);
    let _ = switchboard_mail::quote(&mail.text, mail.from_name.as_deref().unwrap_or("you"));
    if let Some(from) = &mail.from {
        let _ = switchboard_mail::plus_address(from);
    }
    if let Ok(text) = std::str::from_utf8(raw) {
        let _ = switchboard_mail::plus_address(text);
        let _ = switchboard_mail::reply_subject(text);
        let _ = switchboard_mail::path_of(text, "FROM:");
        let _ = switchboard_mail::path_of(text, "TO:");
    }
});
