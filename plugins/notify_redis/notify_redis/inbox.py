"""Inboxes on Redis (the optional ``inboxes`` capability), one Lua script per change.

A user's inbox is five keys that share one hash slot — the user id is their
hash tag (``<prefix>inbox:{<user>}:...``; for an id with a brace, a digest of
it, followed by the id), so every script works on Redis Cluster too:

- ``:active`` a sorted set, id -> seq, of the unread and read items (listing);
- ``:archived`` a sorted set, id -> seq, of the archived ones;
- ``:unread`` a sorted set, id -> seq, of the unread ones: its ``ZCARD`` is
  the unread count, kept by Redis with every change and read in O(1);
- ``:data`` a hash, id -> ``<added ms> <json>``;
- ``:meta`` a hash: ``seq``, the last seq given.

Each change (add with its retention, mark read, mark all read, archive) is
one script, so the sets and the count never disagree, even when a client
retries a script whose reply was lost (every change is idempotent).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

from notify_redis.connection import RedisConnection
from notifycore.backends import inboxes
from notifycore.backends.inboxes import ARCHIVED, READ, UNREAD, InboxChange, InboxRecord

__all__ = ["InboxKeys", "RedisInboxes"]

# KEYS: active, archived, unread, data, meta. ARGV: id, data, now ms, max items, oldest ms kept
# ('' for no age limit). Returns {seq or 0, unread count}.
ADD = """
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  return {0, redis.call('ZCARD', KEYS[3])}
end
local seq = redis.call('HINCRBY', KEYS[5], 'seq', 1)
redis.call('ZADD', KEYS[1], seq, ARGV[1])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3] .. ' ' .. ARGV[2])
local function drop(id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
local function oldest()
  local a = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local b = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #a == 0 then return b[1] end
  if #b == 0 then return a[1] end
  if tonumber(a[2]) < tonumber(b[2]) then return a[1] end
  return b[1]
end
local max = tonumber(ARGV[4])
while redis.call('HLEN', KEYS[4]) > max do drop(oldest()) end
if ARGV[5] ~= '' then
  local cutoff = tonumber(ARGV[5])
  while true do
    local id = oldest()
    if not id then break end
    local value = redis.call('HGET', KEYS[4], id)
    local added = tonumber(string.sub(value, 1, string.find(value, ' ', 1, true) - 1))
    if added >= cutoff then break end
    drop(id)
  end
end
return {seq, redis.call('ZCARD', KEYS[3])}
"""

# KEYS: the listed set (active or archived), unread, data. ARGV: max score ('(' seq or '+inf'),
# limit. Returns flat {id, seq, unread 0/1, value, ...}, newest first.
LIST = """
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #ids, 2 do
  local id = ids[i]
  out[#out + 1] = id
  out[#out + 1] = ids[i + 1]
  out[#out + 1] = redis.call('ZSCORE', KEYS[2], id) and 1 or 0
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
end
return out
"""

# KEYS: active, archived, unread, data. ARGV: ids. Returns flat {id, seq, state, value, ...}.
GET = """
local out = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  local value = redis.call('HGET', KEYS[4], id)
  if value then
    local seq = redis.call('ZSCORE', KEYS[1], id)
    local state = 'read'
    if seq then
      if redis.call('ZSCORE', KEYS[3], id) then state = 'unread' end
    else
      seq = redis.call('ZSCORE', KEYS[2], id)
      state = 'archived'
    end
    out[#out + 1] = id
    out[#out + 1] = seq
    out[#out + 1] = state
    out[#out + 1] = value
  end
end
return out
"""

# KEYS: active, archived, unread. ARGV: ids. Returns {unread count, changed ids...}.
MARK_READ = """
local changed = {}
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[3], ARGV[i]) == 1 then changed[#changed + 1] = ARGV[i] end
end
return {redis.call('ZCARD', KEYS[3]), unpack(changed)}
"""

# KEYS: unread. ARGV: highest seq ('+inf' for all). Returns {unread count, changed count}.
MARK_ALL_READ = """
local count = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return {redis.call('ZCARD', KEYS[1]), count}
"""

# KEYS: active, archived, unread. ARGV: ids. Returns {unread count, changed ids...}.
ARCHIVE = """
local changed = {}
for i = 1, #ARGV do
  local seq = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if seq then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[3], ARGV[i])
    redis.call('ZADD', KEYS[2], seq, ARGV[i])
    changed[#changed + 1] = ARGV[i]
  end
end
return {redis.call('ZCARD', KEYS[3]), unpack(changed)}
"""

_BATCH = 1000  # ids per script call: unpack() has a limit on its arguments


class InboxKeys:
    """The keys of one user's inbox, all in the hash slot of the user id."""

    __slots__ = ("active", "archived", "data", "meta", "unread")

    def __init__(self, prefix: str, user: str) -> None:
        if "{" in user or "}" in user:
            # A brace would end (or empty) the hash tag: tag with a digest, keep the id after it.
            tag = "#" + hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:32]
            base = f"{prefix}inbox:{{{tag}}}:{user}"
        else:
            base = f"{prefix}inbox:{{{user}}}"
        self.active = f"{base}:active"
        self.archived = f"{base}:archived"
        self.unread = f"{base}:unread"
        self.data = f"{base}:data"
        self.meta = f"{base}:meta"

    def all(self) -> list[str]:
        return [self.active, self.archived, self.unread, self.data, self.meta]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(item_id: Any, seq: Any, state: str, value: Any) -> InboxRecord:
    raw = value if isinstance(value, bytes) else str(value).encode()
    added, _, data = raw.partition(b" ")
    return InboxRecord(_text(item_id), int(float(_text(seq))), state, int(added) / 1000, data)


def _batches(item_ids: Iterable[str]) -> list[list[str]]:
    ids = inboxes.unique_ids(item_ids)
    return [ids[start : start + _BATCH] for start in range(0, len(ids), _BATCH)]


class RedisInboxes:
    """``inbox_*`` of :class:`~notify_redis.backend.RedisBackend`."""

    connection: RedisConnection
    prefix: str

    def _inbox_keys(self, user: str) -> InboxKeys:
        return InboxKeys(self.prefix, user)

    def _run(self, what: str, lua: str, keys: list[str], args: list[Any]) -> Any:
        with self.connection.calling(what):
            return self.connection.script(lua)(keys=keys, args=args)

    def inbox_add(
        self,
        user: str,
        item_id: str,
        data: bytes,
        *,
        max_items: int,
        max_age: float | None = None,
    ) -> InboxChange:
        keep, max_age = inboxes.add_retention(data, max_items, max_age)
        now_ms = int(time.time() * 1000)
        cutoff = "" if max_age is None else str(now_ms - int(max_age * 1000))
        seq, unread = self._run(
            "inbox_add",
            ADD,
            self._inbox_keys(user).all(),
            [item_id, data, now_ms, keep, cutoff],
        )
        if not int(seq):
            return InboxChange((), int(unread))
        return InboxChange((item_id,), int(unread), 1, int(seq))

    def inbox_list(
        self, user: str, *, before: int | None = None, limit: int = 50, archived: bool = False
    ) -> list[InboxRecord]:
        if limit <= 0:
            return []
        keys = self._inbox_keys(user)
        listed = keys.archived if archived else keys.active
        flat = self._run(
            "inbox_list",
            LIST,
            [listed, keys.unread, keys.data],
            ["+inf" if before is None else f"({before}", limit],
        )
        records = []
        for i in range(0, len(flat), 4):
            item_id, seq, unread, value = flat[i : i + 4]
            state = ARCHIVED if archived else UNREAD if int(unread) else READ
            records.append(_record(item_id, seq, state, value))
        return records

    def inbox_get(self, user: str, item_ids: Iterable[str]) -> list[InboxRecord]:
        keys = self._inbox_keys(user).all()[:4]
        records = []
        for batch in _batches(item_ids):
            flat = self._run("inbox_get", GET, keys, list(batch))
            for i in range(0, len(flat), 4):
                item_id, seq, state, value = flat[i : i + 4]
                records.append(_record(item_id, seq, _text(state), value))
        return records

    def inbox_unread(self, user: str) -> int:
        with self.connection.calling("inbox_unread"):
            return int(self.connection.client.zcard(self._inbox_keys(user).unread))

    def _change(self, what: str, lua: str, user: str, item_ids: Iterable[str]) -> InboxChange:
        keys = self._inbox_keys(user).all()[:3]
        changed: list[str] = []
        unread = None
        for batch in _batches(item_ids):
            count, *ids = self._run(what, lua, keys, list(batch))
            unread = int(count)
            changed.extend(_text(i) for i in ids)
        if unread is None:
            unread = self.inbox_unread(user)
        return InboxChange(tuple(changed), unread, len(changed))

    def inbox_mark_read(self, user: str, item_ids: Iterable[str]) -> InboxChange:
        return self._change("inbox_mark_read", MARK_READ, user, item_ids)

    def inbox_archive(self, user: str, item_ids: Iterable[str]) -> InboxChange:
        return self._change("inbox_archive", ARCHIVE, user, item_ids)

    def inbox_mark_all_read(self, user: str, *, up_to: int | None = None) -> InboxChange:
        unread, count = self._run(
            "inbox_mark_all_read",
            MARK_ALL_READ,
            [self._inbox_keys(user).unread],
            ["+inf" if up_to is None else up_to],
        )
        return InboxChange((), int(unread), int(count))
