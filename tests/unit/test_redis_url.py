"""``REDIS_URL`` as operators write it: five schemes, and a clear answer for each mistake."""

from __future__ import annotations

import pytest

from bot.redis_url import RedisLocation, parse_redis_url


@pytest.mark.parametrize(
    ("url", "location"),
    [
        (
            "redis://localhost:6379/0",
            RedisLocation(topology="server", scheme="redis", hosts=(("localhost", 6379),)),
        ),
        (
            "redis://redis",
            RedisLocation(topology="server", scheme="redis", hosts=(("redis", 6379),)),
        ),
        (
            "rediss://:s3cr3t@redis.example.internal:6380/2",
            RedisLocation(
                topology="server",
                scheme="rediss",
                hosts=(("redis.example.internal", 6380),),
                db=2,
                tls=True,
            ),
        ),
        (
            "redis://pitcrew:pw@10.0.0.7/3",
            RedisLocation(topology="server", scheme="redis", hosts=(("10.0.0.7", 6379),), db=3),
        ),
        (
            "redis://[::1]:6379/0",
            RedisLocation(topology="server", scheme="redis", hosts=(("[::1]", 6379),)),
        ),
        (
            "redis://redis:6379?db=4",
            RedisLocation(topology="server", scheme="redis", hosts=(("redis", 6379),), db=4),
        ),
        (
            "unix:///run/redis/redis.sock?db=1",
            RedisLocation(topology="socket", scheme="unix", path="/run/redis/redis.sock", db=1),
        ),
        (
            "redis+sentinel://:pw@s1:26379,s2:26379,s3/mymaster/1",
            RedisLocation(
                topology="sentinel",
                scheme="redis+sentinel",
                hosts=(("s1", 26379), ("s2", 26379), ("s3", 26379)),
                master="mymaster",
                db=1,
            ),
        ),
        (
            "redis+sentinel://s1:26379/mymaster",
            RedisLocation(
                topology="sentinel",
                scheme="redis+sentinel",
                hosts=(("s1", 26379),),
                master="mymaster",
            ),
        ),
        (
            "redis+cluster://:pw@n1:7000,n2:7001",
            RedisLocation(
                topology="cluster", scheme="redis+cluster", hosts=(("n1", 7000), ("n2", 7001))
            ),
        ),
    ],
)
def test_each_scheme_reads_as_its_topology(url: str, location: RedisLocation) -> None:
    assert parse_redis_url(url) == location


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "expected a URL with its scheme, like redis://host:6379/0"),
        ("http://redis:6379", "unknown scheme http:// (expected one of redis://, rediss://"),
        ("redis://", "no host"),
        ("redis://redis:port/0", "port 'port' of redis is not a number from 1 to 65535"),
        ("redis://redis:70000/0", "port '70000' of redis is not a number from 1 to 65535"),
        ("redis://redis:6379/zero", "database 'zero' is not a number"),
        ("redis://a:6379,b:6379/0", "several hosts: use redis+sentinel://"),
        ("redis://@redis:6379/0", "nothing before '@'"),
        ("redis://:pa#ss@redis:6379/0", "a '#' in the URL: percent-encode it"),
        ("unix://run/redis.sock", "unix:// needs an absolute path"),
        ("redis+sentinel://s1:26379", "no master name"),
        ("redis+sentinel://s1:26379/", "no master name"),
        ("redis+sentinel://s1:26379/my master", "is not a Sentinel master name"),
        ("redis+sentinel://s1:26379/m/0/1", "expected /<master>[/db] after the Sentinels"),
        ("redis+sentinel://s1:26379,,s2/m", "an empty host in the list"),
        ("redis+cluster://n1:7000/1", "Redis Cluster has only database 0"),
        ("redis+cluster://n1:x", "port 'x' of n1 is not a number"),
    ],
)
def test_a_malformed_url_is_answered_in_words(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=r".") as error:
        parse_redis_url(url)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rediss://:s3cr3t@redis:6380/2", "rediss://redis:6380/2"),
        (
            "redis+sentinel://:s3cr3t@s1,s2:5000/mymaster",
            "redis+sentinel://s1:26379,s2:5000/mymaster/0",
        ),
        ("redis+cluster://user:s3cr3t@n1:7000", "redis+cluster://n1:7000"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_the_display_form_never_carries_the_password(url: str, shown: str) -> None:
    assert parse_redis_url(url).display == shown
