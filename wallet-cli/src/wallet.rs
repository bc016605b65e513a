//! The plumbing shared by the commands that talk to a node: keys by name,
//! the community the node serves, signing and submitting with fresh nonces,
//! refusals said in words, and command errors with their exit statuses.

use std::cell::OnceCell;
use std::io::Write;

use gridshare_ledger::Hash;
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::tx::{SignedTx, Tx};
use serde::Serialize;

use crate::amount::format_money;
use crate::keystore::{KeyFile, Keystore, KeystoreError, PassphraseSource, Role};
use crate::market_time::format_utc;
use gridshare_api::client::{Client, ClientError, Community, Submission};

/// Exit status when an audit or a proof has findings, or the node refused.
pub const EXIT_FINDING: u8 = 1;
/// Exit status for bad usage or input, and when nothing could be done.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit status when the node could not be reached, did not answer in time,
/// or answered that it is busy or failing (429, 5xx): the same command may
/// succeed later.
pub const EXIT_TRANSIENT: u8 = 3;
/// How many nonces a submission tries. The node's last nonce counts what
/// waits in its mempool, so the first is free unless another wallet of the
/// same signer submitted in between.
pub const NONCE_ATTEMPTS_MAX: u64 = 4;
/// Public keys are shown this many hex digits long when no name is known.
const SHORT_KEY_DIGITS: usize = 12;

/// Why a command failed; the exit status follows from it.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Input refused before anything was sent.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error("{}", node_error_text(.0))]
    Node(#[from] ClientError),
    /// The node refused a transaction, or does not know what was asked.
    #[error("{0}")]
    Rejected(String),
    /// A proof that does not verify.
    #[error("{0}")]
    Finding(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Rejected(_) | CommandError::Finding(_) => EXIT_FINDING,
            CommandError::Node(error) if error.is_transient() => EXIT_TRANSIENT,
            _ => EXIT_BAD_INPUT,
        }
    }
}

/// A node error for people: an unreachable node comes with how to start one.
pub fn node_error_text(error: &ClientError) -> String {
    match error {
        ClientError::Unreachable { .. } => {
            format!("{error} (is gridshare-node running? start one with: gridshare-node run --dev)")
        }
        other => other.to_string(),
    }
}

/// A refused input as a command error.
pub fn bad_input(error: impl std::fmt::Display) -> CommandError {
    CommandError::BadInput(error.to_string())
}

/// A transaction that was sent, and what the node did with it.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub tx: SignedTx,
    pub id: Hash,
    pub outcome: Submission,
}

impl Submitted {
    pub fn admitted(&self) -> bool {
        matches!(self.outcome, Submission::Admitted { .. })
    }

    /// The `--json` form: the id, `admitted` or `rejected`, and why.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.outcome {
            Submission::Admitted { .. } => {
                serde_json::json!({ "id": self.id.to_string(), "status": "admitted" })
            }
            Submission::Refused { code, reason, message, .. } => serde_json::json!({
                "id": self.id.to_string(),
                "status": "rejected",
                "code": code,
                "reason": reason,
                "message": message,
            }),
        }
    }
}

/// The keystore and the node, with what was learnt from them cached.
#[derive(Debug)]
pub struct Wallet {
    keystore: Keystore,
    node: Client,
    community: OnceCell<Community>,
    keys: OnceCell<Vec<KeyFile>>,
}

impl Wallet {
    pub fn new(keystore: Keystore, node: Client) -> Wallet {
        Wallet { keystore, node, community: OnceCell::new(), keys: OnceCell::new() }
    }

    pub fn node(&self) -> &Client {
        &self.node
    }

    pub fn keystore(&self) -> &Keystore {
        &self.keystore
    }

    /// The community of the node, its genesis checked (fetched once).
    pub fn community(&self) -> Result<&Community, CommandError> {
        if let Some(community) = self.community.get() {
            return Ok(community);
        }
        let community = self.node.community()?;
        Ok(self.community.get_or_init(|| community))
    }

    /// Every key in the keystore (read once).
    pub fn keys(&self) -> Result<&[KeyFile], CommandError> {
        if let Some(keys) = self.keys.get() {
            return Ok(keys);
        }
        let keys = self.keystore.list()?;
        Ok(self.keys.get_or_init(|| keys))
    }

    /// The keystore name of a public key (hex), if there is one.
    pub fn name_of(&self, key_hex: &str) -> Option<&str> {
        let keys = self.keys().ok()?;
        keys.iter().find(|file| file.public_key == key_hex).map(|file| file.name.as_str())
    }

    /// A key for people: its keystore name, else its first hex digits.
    pub fn label(&self, key_hex: &str) -> String {
        match self.name_of(key_hex) {
            Some(name) => name.to_string(),
            None => short_key(key_hex),
        }
    }

    /// The key file named `name`, which must have `role`; without a name,
    /// the only key of that role in the keystore. `flag` is the option that
    /// names one, for the message when there are several.
    pub fn key_file(&self, name: Option<&str>, role: Role, flag: &str) -> Result<KeyFile, CommandError> {
        let role_name = role.as_str();
        if let Some(name) = name {
            let file = self.keystore.get(name).map_err(unknown_key)?;
            if file.role != role {
                return Err(CommandError::BadInput(format!(
                    "key `{name}` is {} {} key, not {} {role_name} key",
                    article(file.role.as_str()),
                    file.role.as_str(),
                    article(role_name)
                )));
            }
            return Ok(file);
        }
        let candidates: Vec<&KeyFile> = self.keys()?.iter().filter(|file| file.role == role).collect();
        match candidates[..] {
            [only] => Ok(only.clone()),
            [] => {
                let how = match role {
                    Role::Account => "create one with `gridshare keys new NAME`".to_string(),
                    other => format!(
                        "create one with `gridshare keys new NAME --role {0}` or import one with `gridshare keys import NAME --role {0}`",
                        other.as_str()
                    ),
                };
                Err(CommandError::BadInput(format!(
                    "no {role_name} key in {}: {how}",
                    self.keystore.dir().display()
                )))
            }
            _ => {
                let names: Vec<&str> = candidates.iter().map(|file| file.name.as_str()).collect();
                Err(CommandError::BadInput(format!(
                    "there are several {role_name} keys ({}): say which with {flag} NAME",
                    names.join(", ")
                )))
            }
        }
    }

    /// A public key given as 64 hex digits or as a keystore name.
    pub fn resolve_key(&self, text: &str) -> Result<PublicKey, CommandError> {
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return text.to_ascii_lowercase().parse().map_err(CommandError::BadInput);
        }
        match self.keystore.get(text) {
            Ok(file) => Ok(file.public_key()?),
            Err(KeystoreError::BadName(name)) => Err(CommandError::BadInput(format!(
                "`{name}` is neither a 64-digit hex public key nor a key name"
            ))),
            Err(other) => Err(unknown_key(other)),
        }
    }

    /// Decrypts a key for signing, asking for its passphrase if needed.
    pub fn unlock(&self, file: &KeyFile) -> Result<Keypair, CommandError> {
        Ok(self.keystore.unlock(&file.name, &PassphraseSource::from_env())?)
    }

    /// Signs `build(nonce)` with the next free nonce of `signer` and submits
    /// it. The nonce follows the last one the node reports (waiting
    /// transactions included); when the node answers that it is used (another
    /// wallet of the signer was quicker), the next one is tried: gaps are
    /// allowed. A duplicate is not retried: that would make a second
    /// transaction of the same intent.
    pub fn submit_with_nonce(
        &self,
        signer: &Keypair,
        build: impl Fn(u64) -> Tx,
    ) -> Result<Submitted, CommandError> {
        let community_id = self.community()?.genesis.community_id;
        let last = self.node.last_nonce(&signer.public())?.unwrap_or(0);
        let mut nonce = last.checked_add(1).ok_or_else(|| bad_input("the signer's nonces are used up"))?;
        let mut attempt = 1;
        loop {
            let tx = SignedTx::sign(build(nonce), signer, &community_id);
            let submitted = self.submit(tx)?;
            let used = submitted.outcome.refusal_code() == Some("stale_nonce");
            if !used || attempt == NONCE_ATTEMPTS_MAX {
                return Ok(submitted);
            }
            attempt += 1;
            nonce = nonce.checked_add(1).ok_or_else(|| bad_input("the signer's nonces are used up"))?;
        }
    }

    /// Submits a signed transaction.
    pub fn submit(&self, tx: SignedTx) -> Result<Submitted, CommandError> {
        let community_id = self.community()?.genesis.community_id;
        let outcome = self.node.submit(&tx)?;
        Ok(Submitted { id: tx.id(&community_id), tx, outcome })
    }

    /// The error for a refused submission: the node's reason in words, with
    /// amounts in the currency and times in UTC, and what to do about it.
    pub fn refusal(&self, what: &str, submitted: &Submitted) -> CommandError {
        let Submission::Refused { code, reason, message, .. } = &submitted.outcome else {
            return CommandError::Rejected(format!("{what} was admitted"));
        };
        let currency = self.community().map(|community| community.currency().to_string()).unwrap_or_default();
        let code = reason.as_deref().unwrap_or(code.as_str());
        let mut text = format!("the node rejected {what}: {} ({code})", humanize(message, &currency));
        if let Some(hint) = hint(code) {
            text.push_str("\n  ");
            text.push_str(hint);
        }
        CommandError::Rejected(text)
    }
}

/// The first pause before asking an unreachable node again, doubled after
/// each failure up to [`NODE_RETRY_MAX`].
pub const NODE_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
pub const NODE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `ask` until it does not fail for want of the node: for the commands
/// that run unattended (`meter run`, `agent run`), a node that is down, slow
/// or busy is waited for, each failure logged to standard error with what
/// was being done; every other error is returned.
pub fn until_the_node_answers<T>(
    what: &str,
    ask: impl FnMut() -> Result<T, CommandError>,
) -> Result<T, CommandError> {
    retrying(what, NODE_RETRY_FIRST, ask)
}

/// Submits `build`'s transaction, asking again as
/// [`until_the_node_answers`] does while the node cannot be reached or says
/// it is busy (429); what it finally answered.
pub fn submit_when_taken(
    wallet: &Wallet,
    what: &str,
    signer: &Keypair,
    build: impl Fn(u64) -> Tx,
) -> Result<Submitted, CommandError> {
    until_the_node_answers(what, || {
        let submitted = wallet.submit_with_nonce(signer, &build)?;
        match submitted.outcome.refusal_error() {
            Some(busy) if submitted.outcome.is_busy() => Err(CommandError::Node(busy)),
            _ => Ok(submitted),
        }
    })
}

fn retrying<T>(
    what: &str,
    first_pause: std::time::Duration,
    mut ask: impl FnMut() -> Result<T, CommandError>,
) -> Result<T, CommandError> {
    let mut pause = first_pause;
    loop {
        match ask() {
            Err(CommandError::Node(error)) if error.is_transient() => {
                eprintln!("{what}: {error}; trying again in {} s", pause.as_secs());
                std::thread::sleep(pause);
                pause = (pause * 2).min(NODE_RETRY_MAX);
            }
            result => return result,
        }
    }
}

/// A key name that is not in the keystore, said with what to do.
fn unknown_key(error: KeystoreError) -> CommandError {
    match error {
        KeystoreError::Unknown { name, dir } => CommandError::BadInput(format!(
            "unknown key `{name}`: no key of that name in {} (`gridshare keys list` shows the names)",
            dir.display()
        )),
        other => other.into(),
    }
}

/// What to do about a refusal, by its code.
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "insufficient_funds" => {
            "ask a registrar for a credit (gridshare credit), or offer less energy or a lower price"
        }
        "interval_closed" => "offer for a later interval, e.g. --interval next",
        "interval_too_far_ahead" => "offer for an earlier interval",
        "unknown_account" => {
            "a registrar registers the account with: gridshare register account KEY --credit-limit AMOUNT"
        }
        "unknown_meter" => {
            "a registrar registers the meter with: gridshare register meter KEY --owner ACCOUNT --max-import-kw X --max-export-kw Y"
        }
        "foreign_meter" => "attest with a meter of this account: --meter NAME",
        "stale_attestation" => {
            "offer for an earlier interval: attestations are only good for a few intervals"
        }
        "both_sides" => "cancel the offers on the other side first (gridshare offers, gridshare cancel)",
        "energy_above_meter_limit" => {
            "offer less energy: the account's meters cannot move more in one interval"
        }
        "not_a_registrar" => "sign with a registrar key of this community (--as NAME)",
        "tariffs_not_in_future" => "choose a later --from-interval",
        "reading_not_increasing" | "reading_before_interval_end" => {
            "report for an interval after the last reported one that has ended"
        }
        "reading_before_registration" => {
            "report for the interval the meter was registered in or a later one (gridshare balance shows it)"
        }
        "reading_above_capacity" => {
            "check the registers: they cannot rise faster than the meter's registered power allows; a missed interval is billed at that power until a reading closes the gap"
        }
        "meter_power_above_bound" | "account_power_above_bound" => {
            "register less power: at most 1 GW per meter and 10 GW per account, each way"
        }
        "too_many_meters" => "the community has as many meters as it may have",
        "invalid_key" => {
            "register a key made by gridshare keys new: a key of small order is one anybody could sign for"
        }
        "credits_above_bound" => {
            "credit less: a community's credits may total at most 10^27 units of its currency"
        }
        "mempool_full" => "try again after the next block",
        "busy" => {
            "the node serves as many event streams and exports as it allows now: try again in a few seconds"
        }
        "backlog" => {
            "the node cannot get transactions into blocks in time now: try again in a few seconds, or offer for a later interval (--interval next)"
        }
        _ => return None,
    })
}

/// Rewrites a node's message for people: `250000000 nano` becomes
/// `0.25 EUR`, and `1795281604800 ms` (a time) `2026-11-21 17:20:04.800 UTC`.
pub fn humanize(message: &str, currency: &str) -> String {
    /// Numbers of milliseconds at least this large are times, not durations.
    const TIME_MS_MIN: u64 = 100_000_000_000;
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while !rest.is_empty() {
        let number_len = rest
            .char_indices()
            .take_while(|&(index, c)| c.is_ascii_digit() || (index == 0 && c == '-'))
            .count();
        let starts_word = out.chars().last().is_none_or(|c| !c.is_ascii_alphanumeric());
        if number_len > 0 && starts_word {
            let (number, after) = rest.split_at(number_len);
            if let (Some(unit_rest), Ok(nano)) = (after.strip_prefix(" nano"), number.parse::<i128>())
                && !unit_rest.starts_with(|c: char| c.is_ascii_alphanumeric())
                && !currency.is_empty()
            {
                out.push_str(&format_money(nano, currency));
                rest = unit_rest;
                continue;
            }
            if let (Some(unit_rest), Ok(time_ms)) = (after.strip_prefix(" ms"), number.parse::<u64>())
                && !unit_rest.starts_with(|c: char| c.is_ascii_alphanumeric())
                && time_ms >= TIME_MS_MIN
            {
                out.push_str(&format_utc(time_ms));
                rest = unit_rest;
                continue;
            }
            out.push_str(number);
            rest = after;
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// The first hex digits of a key, marked as shortened.
pub fn short_key(key_hex: &str) -> String {
    match key_hex.get(..SHORT_KEY_DIGITS) {
        Some(prefix) if key_hex.len() > SHORT_KEY_DIGITS => format!("{prefix}…"),
        _ => key_hex.to_string(),
    }
}

/// `1 trade`, `2 trades`.
pub fn plural(count: impl Into<u64>, one: &str, many: &str) -> String {
    let count = count.into();
    format!("{count} {}", if count == 1 { one } else { many })
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

/// Writes one JSON value on a line.
pub fn write_json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), CommandError> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_is_away_is_waited_for_and_a_refusal_is_not() {
        let away = || {
            CommandError::Node(ClientError::Unreachable {
                url: "http://127.0.0.1:1".into(),
                cause: "refused".into(),
            })
        };
        let mut attempts = 0;
        let answer = retrying("test", std::time::Duration::ZERO, || {
            attempts += 1;
            if attempts < 3 { Err(away()) } else { Ok(attempts) }
        });
        assert_eq!(answer.unwrap(), 3);
        let mut attempts = 0;
        let refused = retrying("test", std::time::Duration::ZERO, || -> Result<(), CommandError> {
            attempts += 1;
            Err(CommandError::BadInput("no such account".into()))
        });
        assert!(matches!(refused, Err(CommandError::BadInput(_))));
        assert_eq!(attempts, 1);
        let busy = ClientError::Refused {
            method: "POST",
            path: "/v1/transactions".into(),
            status: 429,
            code: gridshare_api::ErrorCode::Backlog,
            message: String::new(),
        };
        assert!(busy.is_transient());
        let bad = ClientError::Refused {
            method: "GET",
            path: "/v1/meters/x".into(),
            status: 400,
            code: gridshare_api::ErrorCode::BadKey,
            message: String::new(),
        };
        assert!(!bad.is_transient());
    }

    #[test]
    fn node_messages_in_words() {
        assert_eq!(
            humanize("insufficient funds: 250000000 nano needed, 100 nano available", "EUR"),
            "insufficient funds: 0.25 EUR needed, 0.0000001 EUR available"
        );
        assert_eq!(
            humanize(
                "interval 12 closed for offers at 1795281604800 ms; the block time is 1795281605000 ms",
                "EUR"
            ),
            "interval 12 closed for offers at 2026-11-21 17:20:04.800 UTC; the block time is 2026-11-21 17:20:05 UTC"
        );
        assert_eq!(
            humanize("a2 nano, -5 nano, 5 nanos, 40 ms", "EUR"),
            "a2 nano, -0.000000005 EUR, 5 nanos, 40 ms"
        );
        assert_eq!(humanize("", "EUR"), "");
        assert_eq!(humanize("déjà 3 nano", "EUR"), "déjà 0.000000003 EUR");
    }

    #[test]
    fn keys_for_people() {
        assert_eq!(short_key(&"ab".repeat(32)), "abababababab…");
        assert_eq!(short_key("abc"), "abc");
        assert_eq!(hint("insufficient_funds").map(|h| h.contains("credit")), Some(true));
        assert_eq!(hint("something_new"), None);
        // Every refusal that asks to come back later says when.
        for code in gridshare_api::ErrorCode::ALL.iter().filter(|code| code.status() == 429) {
            assert!(hint(code.as_str()).is_some_and(|hint| hint.contains("try again")), "{code}");
        }
    }

    #[test]
    fn key_files_by_role() {
        let dir = tempfile::tempdir().unwrap();
        let keystore = Keystore::new(dir.path());
        keystore.import("home", Role::Account, [1; 32], None).unwrap();
        keystore.import("home-meter", Role::Meter, [2; 32], None).unwrap();
        let wallet = Wallet::new(keystore.clone(), Client::new("http://127.0.0.1:1").unwrap());
        assert_eq!(wallet.key_file(None, Role::Account, "--from").unwrap().name, "home");
        assert_eq!(wallet.key_file(Some("home-meter"), Role::Meter, "--meter").unwrap().name, "home-meter");
        let wrong = wallet.key_file(Some("home-meter"), Role::Account, "--from").unwrap_err().to_string();
        assert_eq!(wrong, "key `home-meter` is a meter key, not an account key");
        let none = wallet.key_file(None, Role::Registrar, "--as").unwrap_err().to_string();
        assert!(none.starts_with("no registrar key in "), "{none}");
        let unknown = wallet.resolve_key("nobody").unwrap_err().to_string();
        assert!(unknown.starts_with("unknown key `nobody`"), "{unknown}");
        let hex = Keypair::from_seed([1; 32]).public().to_string();
        assert_eq!(wallet.resolve_key("home").unwrap().to_string(), hex);
        assert_eq!(wallet.resolve_key(&hex.to_ascii_uppercase()).unwrap().to_string(), hex);
        assert_eq!(wallet.label(&hex), "home");
        // A second account key makes the default ambiguous.
        keystore.import("cabin", Role::Account, [3; 32], None).unwrap();
        let wallet = Wallet::new(keystore, Client::new("http://127.0.0.1:1").unwrap());
        let several = wallet.key_file(None, Role::Account, "--from").unwrap_err().to_string();
        assert_eq!(several, "there are several account keys (cabin, home): say which with --from NAME");
    }
}
