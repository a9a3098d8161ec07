"""Identity, tokens and access control shared by generated services.

- principal: who is calling (user, machine client or anonymous);
- keys, tokens: Ed25519 signing keys, JWKS, issuing and verifying access tokens;
- passwords: argon2 hashing;
- authenticate: the request -> Principal step every protected route runs;
- policy: the one place that decides what a principal may do to an entity's rows and fields;
- identity: the endpoints of the identity service (signup, login, refresh, API keys, ...).
"""
