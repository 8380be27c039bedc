//! DNSSEC online signing, as SkyDNS `-dnssec`: the BIND-format key pair, RRSIGs made per
//! reply RRset (kept in a bounded signature cache), NSEC3 "white lies" for NXDOMAIN and
//! NODATA, and the DNSKEY at the apex. Crypto is ring's; record formats are hickory's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::{BASE32HEX_NOPAD, BASE64};
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, NSEC3, RRSIG, SigInput};
use hickory_proto::dnssec::{Algorithm, Nsec3HashAlgorithm, PublicKeyBuf, TBS};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};
use prometheus::IntCounter;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair};

use crate::resolve::Answer;

/// Signatures start this long before now (clock skew between us and validators).
const INCEPTION_BEFORE: u32 = 3 * 3600;
/// Signatures end this long after they are made.
const VALIDITY: u32 = 7 * 24 * 3600;
/// A cached signature is used while it stays valid for at least this long.
const REUSE_MARGIN: u32 = 24 * 3600;

/// Why the key pair cannot be used; each is fatal at start.
#[derive(Debug, thiserror::Error)]
pub enum DnssecError {
    #[error("dnssec: cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dnssec: {path}: {what}")]
    Format { path: PathBuf, what: String },
    #[error(
        "dnssec: ownername of DNSKEY must match SkyDNS domain: key is for {owner}, domain is {domain}"
    )]
    Owner { owner: String, domain: String },
    #[error(
        "dnssec: algorithm {0} cannot sign here (supported: RSASHA256, RSASHA512, ECDSAP256SHA256, ECDSAP384SHA384, ED25519; make a key with e.g. dnssec-keygen -a ECDSAP256SHA256 -n ZONE <domain>)"
    )]
    Algorithm(String),
    #[error("dnssec: the private key does not match the public key or is malformed: {0}")]
    Key(String),
}

/// The private half, ready to sign.
enum SigningKey {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(signature::RsaKeyPair, &'static dyn signature::RsaEncoding),
}

impl SigningKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        match self {
            Self::Ecdsa(pair) => Ok(pair.sign(&rng, message)?.as_ref().to_vec()),
            Self::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Self::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, message, &mut out)?;
                Ok(out)
            }
        }
    }
}

/// One RRset as the cache knows it: lower-case owner, type, TTL and the data in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RrsetKey {
    name: Name,
    rtype: RecordType,
    ttl: u32,
    data: Vec<RData>,
}

/// A signature and when it stops being valid.
struct Cached {
    rrsig: RRSIG,
    expiration: u32,
}

/// The zone key and what signing with it needs.
pub struct Dnssec {
    key: SigningKey,
    algorithm: Algorithm,
    key_tag: u16,
    /// The domain (the DNSKEY's owner), which signs every RRset under it.
    signer: Name,
    dnskey: DNSKEY,
    /// TTL of the DNSKEY (the zone's `ttl`) and of NSEC3 records (`min_ttl`).
    dnskey_ttl: u32,
    nsec3_ttl: u32,
    capacity: usize,
    cache: Mutex<HashMap<RrsetKey, Cached>>,
    misses: IntCounter,
}

impl std::fmt::Debug for Dnssec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnssec")
            .field("signer", &self.signer)
            .field("algorithm", &self.algorithm)
            .field("key_tag", &self.key_tag)
            .finish_non_exhaustive()
    }
}

impl Dnssec {
    /// Reads `<base>.key` and `<base>.private` (BIND's formats, as `dnssec-keygen` writes
    /// them); the key's owner must be `domain`.
    pub fn load(
        base: &str,
        domain: &Name,
        ttl: u32,
        min_ttl: u32,
        capacity: usize,
        misses: IntCounter,
    ) -> Result<Self, DnssecError> {
        let public_path = PathBuf::from(format!("{base}.key"));
        let private_path = PathBuf::from(format!("{base}.private"));
        let public_text = read(&public_path)?;
        let private_text = read(&private_path)?;
        let public = parse_public(&public_path, &public_text)?;
        let owner = Name::from_ascii(&public.owner)
            .map(|n| n.to_lowercase())
            .map_err(|e| format_error(&public_path, format!("owner {:?}: {e}", public.owner)))?;
        if !owner.is_fqdn() || &owner != domain {
            return Err(DnssecError::Owner {
                owner: public.owner,
                domain: domain.to_ascii(),
            });
        }
        let fields = parse_private(&private_path, &private_text)?;
        let private_algorithm = fields
            .get("algorithm")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u8>().ok())
            .ok_or_else(|| format_error(&private_path, "no Algorithm line".into()))?;
        if private_algorithm != public.algorithm {
            return Err(format_error(
                &private_path,
                format!(
                    "algorithm {private_algorithm} differs from the public key's {}",
                    public.algorithm
                ),
            ));
        }
        let algorithm = Algorithm::from_u8(public.algorithm);
        let field = |name: &str| -> Result<Vec<u8>, DnssecError> {
            let text = fields
                .get(name)
                .ok_or_else(|| format_error(&private_path, format!("no {name} line")))?;
            BASE64
                .decode(text.as_bytes())
                .map_err(|e| format_error(&private_path, format!("{name}: {e}")))
        };
        let key_error = |e: ring::error::KeyRejected| DnssecError::Key(e.to_string());
        let key = match public.algorithm {
            13 | 14 => {
                let curve = if public.algorithm == 13 {
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let mut point = Vec::with_capacity(public.key.len() + 1);
                point.push(0x04);
                point.extend_from_slice(&public.key);
                SigningKey::Ecdsa(
                    EcdsaKeyPair::from_private_key_and_public_key(
                        curve,
                        &field("privatekey")?,
                        &point,
                        &SystemRandom::new(),
                    )
                    .map_err(key_error)?,
                )
            }
            15 => SigningKey::Ed25519(
                Ed25519KeyPair::from_seed_and_public_key(&field("privatekey")?, &public.key)
                    .map_err(key_error)?,
            ),
            8 | 10 => {
                let components = ring::rsa::KeyPairComponents {
                    public_key: ring::rsa::PublicKeyComponents {
                        n: field("modulus")?,
                        e: field("publicexponent")?,
                    },
                    d: field("privateexponent")?,
                    p: field("prime1")?,
                    q: field("prime2")?,
                    dP: field("exponent1")?,
                    dQ: field("exponent2")?,
                    qInv: field("coefficient")?,
                };
                let pair =
                    signature::RsaKeyPair::from_components(&components).map_err(key_error)?;
                if rsa_public_key(&components.public_key) != public.key {
                    return Err(DnssecError::Key(
                        "the RSA modulus or exponent differs from the .key file".into(),
                    ));
                }
                let encoding: &'static dyn signature::RsaEncoding = if public.algorithm == 8 {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA512
                };
                SigningKey::Rsa(pair, encoding)
            }
            _ => return Err(DnssecError::Algorithm(format!("{algorithm:?}"))),
        };
        let dnskey = DNSKEY::with_flags(public.flags, PublicKeyBuf::new(public.key, algorithm));
        let key_tag = dnskey
            .calculate_key_tag()
            .map_err(|e| DnssecError::Key(e.to_string()))?;
        Ok(Self {
            key,
            algorithm,
            key_tag,
            signer: owner,
            dnskey,
            dnskey_ttl: ttl,
            nsec3_ttl: min_ttl,
            capacity,
            cache: Mutex::new(HashMap::new()),
            misses,
        })
    }

    /// What the start-up line says: `<domain> with key tag <n> (<algorithm>)`.
    pub fn describe(&self) -> String {
        format!(
            "{} key tag {} ({:?})",
            self.signer, self.key_tag, self.algorithm
        )
    }

    /// The DNSKEY record, under the query's spelling of the apex.
    pub fn dnskey_record(&self, owner: &Name) -> Record {
        Record::from_rdata(
            owner.clone(),
            self.dnskey_ttl,
            RData::DNSSEC(DNSSECRData::DNSKEY(self.dnskey.clone())),
        )
    }

    /// Adds the NSEC3 records that prove an NXDOMAIN or a NODATA answer for `qname`, as the
    /// original's white lies do: hashes next to the query's own (SHA-1, no salt, no
    /// iterations), so nothing about the rest of the zone is revealed.
    pub fn deny(&self, answer: &mut Answer, qname: &Name, qtype: RecordType) {
        let qname = qname.to_lowercase();
        if answer.rcode == ResponseCode::NXDomain {
            let encloser = qname.base_name();
            let mut types = BASIC_TYPES.to_vec();
            if encloser == self.signer {
                types.extend_from_slice(&APEX_TYPES);
            }
            if let Some(hash) = self.hash(&encloser) {
                answer
                    .authorities
                    .push(self.nsec3(&hash, &next(&hash), types));
            }
            if let Some(wildcard) = Name::from_ascii("*")
                .ok()
                .and_then(|star| star.append_domain(&encloser).ok())
                .and_then(|name| self.hash(&name))
            {
                answer.authorities.push(self.covering(&wildcard));
            }
            if let Some(hash) = self.hash(&qname) {
                answer.authorities.push(self.covering(&hash));
            }
        } else if answer.rcode == ResponseCode::NoError && answer.answers.is_empty() {
            let mut types = BASIC_TYPES.to_vec();
            if qname == self.signer {
                types.extend_from_slice(&APEX_TYPES);
            }
            // The original lists A, AAAA and SRV whatever was asked, which makes a NODATA
            // for one of them fail validation; the asked type is left out here.
            types.retain(|t| *t != qtype);
            if let Some(hash) = self.hash(&qname) {
                answer
                    .authorities
                    .push(self.nsec3(&hash, &next(&hash), types));
            }
        }
    }

    /// Appends an RRSIG after every RRset in `records` whose owner is in the zone.
    pub fn sign_section(&self, records: &mut Vec<Record>, now: u32) {
        let mut sets: Vec<(Name, RecordType)> = Vec::new();
        for record in records.iter() {
            let rtype = record.record_type();
            if matches!(rtype, RecordType::RRSIG | RecordType::OPT)
                || !self.signer.zone_of(&record.name)
            {
                continue;
            }
            if !sets
                .iter()
                .any(|(name, t)| *t == rtype && name == &record.name)
            {
                sets.push((record.name.clone(), rtype));
            }
        }
        for (name, rtype) in sets {
            let set: Vec<&Record> = records
                .iter()
                .filter(|r| r.record_type() == rtype && r.name == name)
                .collect();
            let ttl = set.iter().map(|r| r.ttl).min().unwrap_or(0);
            match self.rrsig(&name, rtype, ttl, &set, now) {
                Some(rrsig) => {
                    let record =
                        Record::from_rdata(name, ttl, RData::DNSSEC(DNSSECRData::RRSIG(rrsig)));
                    records.push(record);
                }
                None => tracing::warn!(%name, %rtype, "cannot sign an RRset; sent unsigned"),
            }
        }
    }

    /// The RRSIG of one RRset, from the cache while it stays valid for a day more.
    fn rrsig(
        &self,
        name: &Name,
        rtype: RecordType,
        ttl: u32,
        set: &[&Record],
        now: u32,
    ) -> Option<RRSIG> {
        let key = RrsetKey {
            name: name.to_lowercase(),
            rtype,
            ttl,
            data: set.iter().map(|r| r.data.clone()).collect(),
        };
        if self.capacity > 0 {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = cache.get(&key) {
                if cached.expiration.saturating_sub(now) > REUSE_MARGIN {
                    return Some(cached.rrsig.clone());
                }
            }
        }
        self.misses.inc();
        let expiration = now.saturating_add(VALIDITY);
        let input = SigInput {
            type_covered: rtype,
            algorithm: self.algorithm,
            num_labels: name.num_labels(),
            original_ttl: ttl,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(now.saturating_sub(INCEPTION_BEFORE)),
            key_tag: self.key_tag,
            signer_name: self.signer.clone(),
        };
        let owned: Vec<Record> = set
            .iter()
            .map(|r| {
                let mut r = (*r).clone();
                r.ttl = ttl;
                r
            })
            .collect();
        let tbs = TBS::from_input(name, DNSClass::IN, &input, owned.iter()).ok()?;
        let signature = self.key.sign(tbs.as_ref()).ok()?;
        let rrsig = RRSIG::from_sig(input, signature);
        if self.capacity > 0 {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= self.capacity {
                // Full: drop one entry (in hash order, so an arbitrary one).
                if let Some(old) = cache.keys().next().cloned() {
                    cache.remove(&old);
                }
            }
            cache.insert(
                key,
                Cached {
                    rrsig: rrsig.clone(),
                    expiration,
                },
            );
        }
        Some(rrsig)
    }

    /// The NSEC3 hash of a name (SHA-1, no salt, no extra iterations), 20 bytes.
    fn hash(&self, name: &Name) -> Option<Vec<u8>> {
        Nsec3HashAlgorithm::SHA1
            .hash(&[], name, 0)
            .ok()
            .map(|d| d.as_ref().to_vec())
    }

    /// An NSEC3 from `from` (owner) to `to`, listing `types` as present at `from`.
    fn nsec3(&self, from: &[u8], to: &[u8], types: Vec<RecordType>) -> Record {
        let label = BASE32HEX_NOPAD.encode(from).to_ascii_lowercase();
        let owner = Name::from_ascii(&label)
            .and_then(|l| l.append_domain(&self.signer))
            .unwrap_or_else(|_| self.signer.clone());
        let rdata = NSEC3::new(
            Nsec3HashAlgorithm::SHA1,
            false,
            0,
            Vec::new(),
            to.to_vec(),
            types,
        );
        Record::from_rdata(
            owner,
            self.nsec3_ttl,
            RData::DNSSEC(DNSSECRData::NSEC3(rdata)),
        )
    }

    /// An NSEC3 whose span (hash − 1, hash + 1) covers `hash`: that name does not exist.
    fn covering(&self, hash: &[u8]) -> Record {
        let before = previous(hash);
        self.nsec3(&before, &next(hash), Vec::new())
    }
}

/// Types listed at an existing name in NSEC3 white lies (the original's set).
const BASIC_TYPES: [RecordType; 4] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::RRSIG,
];
/// Types present at the apex besides those.
const APEX_TYPES: [RecordType; 3] = [RecordType::NS, RecordType::SOA, RecordType::DNSKEY];

/// The hash plus one, as a 160-bit big-endian number (wrapping).
fn next(hash: &[u8]) -> Vec<u8> {
    let mut out = hash.to_vec();
    for byte in out.iter_mut().rev() {
        let (value, carry) = byte.overflowing_add(1);
        *byte = value;
        if !carry {
            break;
        }
    }
    out
}

/// The hash minus one (wrapping).
fn previous(hash: &[u8]) -> Vec<u8> {
    let mut out = hash.to_vec();
    for byte in out.iter_mut().rev() {
        let (value, borrow) = byte.overflowing_sub(1);
        *byte = value;
        if !borrow {
            break;
        }
    }
    out
}

/// Seconds since the Unix epoch, as RRSIG times count them (mod 2^32).
pub fn unix_now() -> u32 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // RFC 4034 §3.1.5: serial-number arithmetic, so the low 32 bits are the value.
    (seconds & u64::from(u32::MAX)) as u32
}

/// The RSA public key as DNSKEY carries it (RFC 3110: exponent length, exponent, modulus).
fn rsa_public_key(public: &signature::RsaPublicKeyComponents<Vec<u8>>) -> Vec<u8> {
    let strip = |b: &[u8]| -> Vec<u8> {
        let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        b[start..].to_vec()
    };
    let (e, n) = (strip(&public.e), strip(&public.n));
    let mut out = Vec::with_capacity(e.len() + n.len() + 3);
    if let Ok(len) = u8::try_from(e.len()) {
        out.push(len);
    } else {
        out.push(0);
        out.extend_from_slice(&u16::try_from(e.len()).unwrap_or(u16::MAX).to_be_bytes());
    }
    out.extend_from_slice(&e);
    out.extend_from_slice(&n);
    out
}

fn read(path: &Path) -> Result<String, DnssecError> {
    std::fs::read_to_string(path).map_err(|source| DnssecError::Read {
        path: path.to_owned(),
        source,
    })
}

fn format_error(path: &Path, what: String) -> DnssecError {
    DnssecError::Format {
        path: path.to_owned(),
        what,
    }
}

/// The DNSKEY line of a `.key` file.
#[derive(Debug, PartialEq)]
struct PublicKeyLine {
    owner: String,
    flags: u16,
    algorithm: u8,
    key: Vec<u8>,
}

/// Parses `owner [ttl] [class] DNSKEY flags protocol algorithm base64…` (comments after `;`,
/// parentheses and line breaks allowed, as in a zone file).
fn parse_public(path: &Path, text: &str) -> Result<PublicKeyLine, DnssecError> {
    let tokens: Vec<&str> = text
        .lines()
        .map(|line| line.split(';').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .filter(|t| *t != "(" && *t != ")")
        .collect();
    let bad = |what: &str| format_error(path, what.to_owned());
    let at = tokens
        .iter()
        .position(|t| t.eq_ignore_ascii_case("DNSKEY"))
        .ok_or_else(|| bad("no DNSKEY record"))?;
    let owner = tokens
        .first()
        .filter(|_| at > 0)
        .ok_or_else(|| bad("no owner name"))?;
    let number = |i: usize, what: &str| -> Result<u32, DnssecError> {
        tokens
            .get(at + i)
            .and_then(|t| t.parse::<u32>().ok())
            .ok_or_else(|| bad(&format!("DNSKEY {what} is missing or not a number")))
    };
    let flags = u16::try_from(number(1, "flags")?).map_err(|_| bad("DNSKEY flags too large"))?;
    if number(2, "protocol")? != 3 {
        return Err(bad("DNSKEY protocol must be 3"));
    }
    let algorithm =
        u8::try_from(number(3, "algorithm")?).map_err(|_| bad("DNSKEY algorithm too large"))?;
    let encoded: String = tokens.iter().skip(at + 4).copied().collect();
    let key = BASE64
        .decode(encoded.as_bytes())
        .map_err(|e| bad(&format!("DNSKEY public key: {e}")))?;
    if key.is_empty() {
        return Err(bad("DNSKEY public key is empty"));
    }
    Ok(PublicKeyLine {
        owner: (*owner).to_owned(),
        flags,
        algorithm,
        key,
    })
}

/// The `Name: value` lines of a `.private` file, names lower-cased.
fn parse_private(path: &Path, text: &str) -> Result<HashMap<String, String>, DnssecError> {
    let fields: HashMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    match fields.get("private-key-format") {
        Some(v) if v.starts_with("v1.") => Ok(fields),
        _ => Err(format_error(
            path,
            "not a BIND private key (no Private-key-format: v1.x line)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_arithmetic_wraps_like_a_big_number() {
        assert_eq!(next(&[0, 0xff, 0xff]), vec![1, 0, 0]);
        assert_eq!(next(&[0xff, 0xff]), vec![0, 0]);
        assert_eq!(previous(&[1, 0, 0]), vec![0, 0xff, 0xff]);
        assert_eq!(previous(&[0, 0]), vec![0xff, 0xff]);
        assert_eq!(previous(&next(&[7, 9, 200])), vec![7, 9, 200]);
    }

    #[test]
    fn key_files_parse_with_comments_parentheses_and_ttls() {
        let path = Path::new("K.key");
        let text = "; This is a zone-signing key\nskydns.test. 3600 IN DNSKEY 256 3 13 ( ZNaL3Qi+6aA6WZ9x\n g+3pk/LDzRzx7U309W/EjLhEGPHAT1p/d8E1l54uh1dPbERAyGnlw5zrN5b1rZTlv3zO4Q== )\n";
        let line = parse_public(path, text).unwrap();
        assert_eq!(line.owner, "skydns.test.");
        assert_eq!((line.flags, line.algorithm, line.key.len()), (256, 13, 64));
        for bad in [
            "",
            "skydns.test. IN A 1.2.3.4",
            "DNSKEY 256 3 13 AAAA",
            "x. DNSKEY 256 2 13 AAAA",
            "x. DNSKEY 256 3 13 !!!",
            "x. DNSKEY 256 3 13",
            "x. DNSKEY 99999 3 13 AAAA",
        ] {
            assert!(
                parse_public(path, bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn private_files_need_the_format_line() {
        let path = Path::new("K.private");
        let fields = parse_private(
            path,
            "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n",
        )
        .unwrap();
        assert_eq!(fields["algorithm"], "13 (ECDSAP256SHA256)");
        assert!(parse_private(path, "Algorithm: 13\n").is_err());
    }
}
