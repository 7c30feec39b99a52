//! Reading private keys for `token mint`: a private JWK (or `token keygen`'s output), or PEM.

use agent_iam::b64;
use agent_iam::mint::SigningKey;
use agent_iam::token::Algorithm;
use serde_json::Value;

/// The signing key in `text` and the JWK's `kid`, if any. `alg` overrides the JWK's `alg` and the default.
pub fn signing_key(text: &str, alg: Option<Algorithm>) -> Result<(SigningKey, Option<String>), String> {
    if text.trim_start().starts_with("-----BEGIN") {
        return pem_key(text, alg).map(|k| (k, None));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| format!("neither a JWK (JSON) nor PEM: {e}"))?;
    let jwk = if v.get("private_jwk").is_some() { &v["private_jwk"] } else { &v };
    let kid = jwk["kid"].as_str().map(str::to_owned);
    let alg = match alg {
        Some(a) => Some(a),
        None => jwk["alg"].as_str().map(|a| Algorithm::from_name(a).ok_or(format!("unknown alg {a}"))).transpose()?,
    };
    jwk_key(jwk, alg).map(|k| (k, kid))
}

fn member(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = jwk[name].as_str().ok_or(format!("the JWK has no \"{name}\" (a private key is needed)"))?;
    b64::decode(s.as_bytes()).map_err(|e| format!("\"{name}\": {e:?}"))
}

fn jwk_key(jwk: &Value, alg: Option<Algorithm>) -> Result<SigningKey, String> {
    let wrong = |a: Algorithm| format!("{} cannot sign with this key", a.name());
    match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("EC"), Some("P-256")) => ec(&member(jwk, "d")?, alg.unwrap_or(Algorithm::ES256)),
        (Some("EC"), Some("P-384")) => ec(&member(jwk, "d")?, alg.unwrap_or(Algorithm::ES384)),
        (Some("OKP"), Some("Ed25519")) => ed25519(&member(jwk, "d")?, alg.unwrap_or(Algorithm::EdDSA)),
        (Some("RSA"), _) => {
            let int = |n: &str| member(jwk, n).map(|b| rsa::BigUint::from_bytes_be(&b));
            let key = rsa::RsaPrivateKey::from_components(int("n")?, int("e")?, int("d")?, vec![int("p")?, int("q")?])
                .map_err(|e| format!("RSA key: {e}"))?;
            let alg = alg.unwrap_or(Algorithm::RS256);
            SigningKey::rsa(alg, key).ok_or_else(|| wrong(alg))
        }
        (Some("oct"), _) => {
            let alg = alg.unwrap_or(Algorithm::HS256);
            SigningKey::hmac(alg, &member(jwk, "k")?)
                .ok_or_else(|| format!("not an {} secret (too short?)", alg.name()))
        }
        (kty, crv) => Err(format!("unsupported key type kty={kty:?} crv={crv:?}")),
    }
}

fn ec(d: &[u8], alg: Algorithm) -> Result<SigningKey, String> {
    let key = match (alg, d.len()) {
        (Algorithm::ES256, 32) => p256::ecdsa::SigningKey::from_slice(d).ok().map(SigningKey::Es256),
        (Algorithm::ES384, 48) => p384::ecdsa::SigningKey::from_slice(d).ok().map(SigningKey::Es384),
        _ => None,
    };
    key.ok_or_else(|| format!("not an {} private key", alg.name()))
}

fn ed25519(seed: &[u8], alg: Algorithm) -> Result<SigningKey, String> {
    let seed: [u8; 32] = seed.try_into().map_err(|_| "an Ed25519 private key is 32 bytes".to_owned())?;
    if alg != Algorithm::EdDSA {
        return Err(format!("{} cannot sign with an Ed25519 key", alg.name()));
    }
    SigningKey::from_seed(Algorithm::EdDSA, seed).ok_or_else(|| "not an Ed25519 key".to_owned())
}

/// Standard base64 (PEM bodies), padding and whitespace allowed.
fn base64_std(text: &str) -> Result<Vec<u8>, String> {
    let url: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    b64::decode(url.as_bytes()).map_err(|e| format!("PEM body: {e:?}"))
}

/// One DER TLV at the start of `der`: (tag, contents, rest).
fn tlv(der: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let bad = || "malformed DER".to_owned();
    let (&tag, rest) = der.split_first().ok_or_else(bad)?;
    let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// `d` of a SEC1 ECPrivateKey: SEQUENCE { INTEGER 1, OCTET STRING d, ... }.
fn sec1_d(der: &[u8]) -> Result<&[u8], String> {
    let (_, seq, _) = tlv(der)?;
    let (_, _version, rest) = tlv(seq)?;
    let (tag, d, _) = tlv(rest)?;
    if tag != 0x04 {
        return Err("not a SEC1 EC private key".into());
    }
    Ok(d)
}

fn pem_key(text: &str, alg: Option<Algorithm>) -> Result<SigningKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let begin = text.find("-----BEGIN ").ok_or("no PEM block")?;
    let after = &text[begin + 11..];
    let label_end = after.find("-----").ok_or("malformed PEM")?;
    let label = &after[..label_end];
    let body = &after[label_end + 5..];
    let end = body.find("-----END").ok_or("malformed PEM")?;
    let der = base64_std(&body[..end])?;
    let ec_by_len = |d: &[u8]| match d.len() {
        32 => ec(d, alg.unwrap_or(Algorithm::ES256)),
        48 => ec(d, alg.unwrap_or(Algorithm::ES384)),
        _ => Err("unsupported EC curve".into()),
    };
    let rsa_key = |key: rsa::RsaPrivateKey| {
        let alg = alg.unwrap_or(Algorithm::RS256);
        SigningKey::rsa(alg, key).ok_or_else(|| format!("{} cannot sign with an RSA key", alg.name()))
    };
    match label {
        "EC PRIVATE KEY" => ec_by_len(sec1_d(&der)?),
        "RSA PRIVATE KEY" => rsa_key(rsa::RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| e.to_string())?),
        "PRIVATE KEY" => {
            let info = rsa::pkcs8::PrivateKeyInfo::try_from(der.as_slice()).map_err(|e| e.to_string())?;
            match info.algorithm.oid.to_string().as_str() {
                "1.2.840.10045.2.1" => ec_by_len(sec1_d(info.private_key)?),
                "1.3.101.112" => {
                    let (_, seed, _) = tlv(info.private_key)?;
                    ed25519(seed, alg.unwrap_or(Algorithm::EdDSA))
                }
                "1.2.840.113549.1.1.1" => rsa_key(rsa::RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| e.to_string())?),
                oid => Err(format!("unsupported PKCS#8 key algorithm {oid}")),
            }
        }
        other => Err(format!("unsupported PEM block {other} (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")),
    }
}
