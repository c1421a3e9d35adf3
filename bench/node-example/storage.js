'use strict';
// SQLite token + PKCE storage, standing in for the original's Prisma models
// (Prisma downloads its engines from outside the npm registry at install time). Same table shapes:
//   CustomerTokens(id PK autoincrement, customerIdentifier UNIQUE, accessToken, refreshToken, expiresAt)
//   CustomerPkceCodes(id PK autoincrement, customerIdentifier UNIQUE, codeVerifier)
// Only the refresh token is encrypted (AES-256-CBC, fresh random 16-byte IV, stored "<cipher hex>:<iv hex>"),
// as in the original. Unlike the original, the INSERT branch of the upsert encrypts too (the original
// stored the first refresh token in plain text, which made the first refresh crash).
// Methods are async, like the Prisma-backed originals, so the SDK sees the same promise interleavings.

const crypto = require('crypto');
const Database = require('better-sqlite3');

function openDatabase(databaseUrl) {
  const file = (databaseUrl || 'file:./dev.db').replace(/^file:/, '');
  const db = new Database(file);
  db.exec(`
    CREATE TABLE IF NOT EXISTS "CustomerTokens" (
      "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
      "customerIdentifier" TEXT NOT NULL,
      "accessToken" TEXT NOT NULL,
      "refreshToken" TEXT NOT NULL,
      "expiresAt" DATETIME NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS "CustomerTokens_customerIdentifier_key" ON "CustomerTokens"("customerIdentifier");
    CREATE TABLE IF NOT EXISTS "CustomerPkceCodes" (
      "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
      "customerIdentifier" TEXT NOT NULL,
      "codeVerifier" TEXT NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS "CustomerPkceCodes_customerIdentifier_key" ON "CustomerPkceCodes"("customerIdentifier");
  `);
  return db;
}

class SqliteTokenStorage {
  constructor(db, hexKey) {
    this.key = Buffer.from(hexKey, 'hex');
    this.selectStmt = db.prepare('SELECT "accessToken", "refreshToken", "expiresAt" FROM "CustomerTokens" WHERE "customerIdentifier" = ?');
    // DateTime stored as epoch milliseconds, as Prisma does on SQLite.
    this.upsertStmt = db.prepare(`
      INSERT INTO "CustomerTokens" ("customerIdentifier", "accessToken", "refreshToken", "expiresAt")
      VALUES (@customerIdentifier, @accessToken, @refreshToken, @expiresAt)
      ON CONFLICT("customerIdentifier") DO UPDATE SET
        "accessToken" = excluded."accessToken",
        "refreshToken" = excluded."refreshToken",
        "expiresAt" = excluded."expiresAt"`);
  }

  encrypt(plain) {
    const iv = crypto.randomBytes(16);
    const cipher = crypto.createCipheriv('aes-256-cbc', this.key, iv);
    const out = cipher.update(plain, 'utf8', 'hex') + cipher.final('hex');
    return `${out}:${iv.toString('hex')}`;
  }

  decrypt(stored) {
    const [data, ivHex] = stored.split(':');
    const decipher = crypto.createDecipheriv('aes-256-cbc', this.key, Buffer.from(ivHex, 'hex'));
    return decipher.update(data, 'hex', 'utf8') + decipher.final('utf8');
  }

  async retrieve(customerIdentifier) {
    const row = this.selectStmt.get(customerIdentifier);
    if (!row) throw new Error('Token Not Found');
    return {
      accessToken: row.accessToken,
      refreshToken: this.decrypt(row.refreshToken),
      expiresAt: new Date(Number(row.expiresAt)),
    };
  }

  async save(customerIdentifier, tokens) {
    this.upsertStmt.run({
      customerIdentifier,
      accessToken: tokens.accessToken,
      refreshToken: this.encrypt(tokens.refreshToken),
      expiresAt: tokens.expiresAt.getTime(),
    });
  }
}

class SqlitePkceStorage {
  constructor(db) {
    this.selectStmt = db.prepare('SELECT "codeVerifier" FROM "CustomerPkceCodes" WHERE "customerIdentifier" = ?');
    this.upsertStmt = db.prepare(`
      INSERT INTO "CustomerPkceCodes" ("customerIdentifier", "codeVerifier") VALUES (?, ?)
      ON CONFLICT("customerIdentifier") DO UPDATE SET "codeVerifier" = excluded."codeVerifier"`);
    this.deleteStmt = db.prepare('DELETE FROM "CustomerPkceCodes" WHERE "customerIdentifier" = ?');
  }

  async save(customerIdentifier, codeVerifier) {
    this.upsertStmt.run(customerIdentifier, codeVerifier);
  }

  async retrieve(customerIdentifier) {
    const row = this.selectStmt.get(customerIdentifier);
    if (!row) throw new Error('Codes not Found');
    return row.codeVerifier;
  }

  async remove(customerIdentifier) {
    const info = this.deleteStmt.run(customerIdentifier);
    if (info.changes === 0) throw new Error('Codes not Found'); // Prisma delete() throws when absent
  }
}

module.exports = { openDatabase, SqliteTokenStorage, SqlitePkceStorage };
