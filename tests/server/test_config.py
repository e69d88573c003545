"""Tests for tidings.server.config: the validated value, durations, and layered loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tidings.configfile import parse_duration
from tidings.errors import ConfigError
from tidings.server.config import ServerConfig, load_config
from tidings.wire.limits import MAX_PAYLOAD

DAY = 86400.0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tidings.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- ServerConfig -------------------------------------------------------------------------------


def test_defaults() -> None:
    c = ServerConfig()
    assert c.data_dir == Path("./tidings-data")
    assert (c.host, c.port, c.metrics_host, c.metrics_port) == (
        "127.0.0.1",
        7400,
        "127.0.0.1",
        7401,
    )
    assert c.retention_seconds == 30 * DAY
    assert c.max_payload == MAX_PAYLOAD
    assert (c.max_queue, c.rate_per_second, c.rate_burst) == (10_000, 20.0, 100)
    assert c.delivery_window == 256
    assert (c.ping_interval, c.idle_timeout, c.expiry_interval) == (10.0, 30.0, 60.0)
    assert c.link_code_ttl == 600.0
    assert (c.log_level, c.log_format, c.clock_offset) == ("info", "text", 0.0)
    assert c.metrics_enabled


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ServerConfig().port = 1  # type: ignore[misc]


def test_ints_are_accepted_for_float_fields() -> None:
    c = ServerConfig(ping_interval=5, rate_per_second=3)
    assert isinstance(c.ping_interval, float) and c.ping_interval == 5.0
    assert isinstance(c.rate_per_second, float)


def test_metrics_port_zero_disables() -> None:
    assert not ServerConfig(metrics_port=0).metrics_enabled


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", 65536, "port: must be <= 65535"),
        ("port", -1, "port: must be >= 0"),
        ("port", "7400", "port: expected an integer"),
        ("port", True, "port: expected an integer"),
        ("port", 7400.0, "port: expected an integer"),
        ("max_payload", MAX_PAYLOAD + 1, "max_payload: must be <= 65536"),
        ("max_payload", 0, "max_payload: must be >= 1"),
        ("max_queue", 0, "max_queue"),
        ("rate_per_second", 0.0, "rate_per_second: must be > 0"),
        ("rate_per_second", float("nan"), "finite"),
        ("rate_burst", 0, "rate_burst"),
        ("delivery_window", 0, "delivery_window"),
        ("retention_seconds", 0, "retention_seconds: must be > 0"),
        ("expiry_interval", -1.0, "expiry_interval"),
        ("link_code_ttl", float("inf"), "link_code_ttl: expected a finite number"),
        ("log_level", "verbose", "log_level: expected one of debug, info, warning, error"),
        ("log_format", "xml", "log_format: expected one of json, text"),
        ("host", "", "host: expected a non-empty string"),
        ("data_dir", "./x", "data_dir: expected a path"),
        ("clock_offset", "0", "clock_offset: expected a number"),
    ],
)
def test_invalid_values_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**{field: value})  # type: ignore[arg-type]


def test_idle_timeout_must_exceed_ping_interval() -> None:
    with pytest.raises(ConfigError, match=r"idle_timeout \(10\) must be greater than"):
        ServerConfig(ping_interval=10, idle_timeout=10)
    with pytest.raises(ConfigError):
        dataclasses.replace(ServerConfig(), ping_interval=40)


def test_negative_clock_offset_is_allowed() -> None:
    assert ServerConfig(clock_offset=-3600.0).clock_offset == -3600.0


# --- parse_duration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * DAY),
        ("10m", 600.0),
        ("5s", 5.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        (" 2 H ", 7200.0),
        ("90", 90.0),
        ("0.25", 0.25),
        (45, 45.0),
        (1.5, 1.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "5x", "5 days", "1h 30", "-5m", "h5", "1e3d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration(text)


def test_parse_duration_refuses_bool() -> None:
    with pytest.raises(ConfigError):
        parse_duration(True)


# --- load_config: sources -----------------------------------------------------------------------


def test_no_sources_gives_defaults() -> None:
    assert load_config(None, {}, {}) == ServerConfig()


def test_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        data_dir = "/var/lib/tidings"
        port = 7500
        retention_seconds = "7d"
        ping_interval = 15
        idle_timeout = "1m"
        rate_per_second = 5
        log_level = "DEBUG"
        log_format = "json"
        """,
    )
    c = load_config(path, {}, {})
    assert c.data_dir == Path("/var/lib/tidings")
    assert c.port == 7500
    assert c.retention_seconds == 7 * DAY
    assert (c.ping_interval, c.idle_timeout) == (15.0, 60.0)
    assert c.rate_per_second == 5.0
    assert (c.log_level, c.log_format) == ("debug", "json")


def test_empty_file_and_empty_table(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), {}, {}) == ServerConfig()
    assert load_config(write(tmp_path, "[server]\n"), {}, {}) == ServerConfig()


def test_env() -> None:
    env = {
        "TIDINGS_PORT": "7600",
        "TIDINGS_RETENTION_SECONDS": "2d",
        "TIDINGS_RATE_PER_SECOND": "2.5",
        "TIDINGS_DATA_DIR": "/tmp/t",
        "TIDINGS_LOG_FORMAT": "JSON",
        "TIDINGS_CLOCK_OFFSET": "-60",
        "TIDINGS_CONFIG": "/etc/tidings.toml",  # read by the CLI, not a field: ignored
        "HOME": "/root",
        "PATH": "/bin",
    }
    c = load_config(None, env, {})
    assert c.port == 7600
    assert c.retention_seconds == 2 * DAY
    assert c.rate_per_second == 2.5
    assert c.data_dir == Path("/tmp/t")
    assert c.log_format == "json"
    assert c.clock_offset == -60.0


def test_overrides_native_and_text() -> None:
    c = load_config(
        None,
        {},
        {"port": 0, "data_dir": Path("/d"), "idle_timeout": "45s", "max_queue": "50", "host": None},
    )
    assert (c.port, c.data_dir, c.idle_timeout, c.max_queue) == (0, Path("/d"), 45.0, 50)
    assert c.host == "127.0.0.1"  # None means "flag not given"


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 1\nmetrics_port = 1\nmax_queue = 1\n")
    env = {"TIDINGS_PORT": "2", "TIDINGS_METRICS_PORT": "2"}
    c = load_config(path, env, {"port": 3, "metrics_port": None})
    assert c.port == 3  # flag
    assert c.metrics_port == 2  # env (the flag was None)
    assert c.max_queue == 1  # file
    assert c.delivery_window == 256  # default


# --- load_config: errors name the key and the source --------------------------------------------


def test_unknown_file_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nprot = 7400\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    assert str(info.value) == f"{path}: [server] prot: unknown setting; did you mean port?"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 7400\n")
    with pytest.raises(
        ConfigError, match=r"unknown top-level key 'port'; settings go in \[server\]"
    ):
        load_config(path, {}, {})
    with pytest.raises(ConfigError, match="unknown top-level key 'sever'"):
        load_config(write(tmp_path, "[sever]\nport = 1\n"), {}, {})


def test_server_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a table"):
        load_config(write(tmp_path, 'server = "x"\n'), {}, {})


def test_wrong_type_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = "7400"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    assert str(info.value) == f"{path}: [server] port: expected an integer, got '7400'"


def test_out_of_range_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nmax_payload = 1048576\n")
    with pytest.raises(ConfigError, match=r"\[server\] max_payload: must be <= 65536, got 1048576"):
        load_config(path, {}, {})


def test_bad_duration_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nretention_seconds = "30 days"\n')
    with pytest.raises(ConfigError, match=r"\[server\] retention_seconds: invalid duration"):
        load_config(path, {}, {})


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"cannot read config file {path}"):
        load_config(path, {}, {})


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = \n")
    with pytest.raises(ConfigError, match=f"{path}: invalid TOML"):
        load_config(path, {}, {})


def test_unknown_env_var() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"TIDINGS_PROT": "1"}, {})
    assert str(info.value) == (
        "environment variable TIDINGS_PROT: unknown setting; did you mean TIDINGS_PORT?"
    )


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("TIDINGS_PORT", "http", "expected an integer, got 'http'"),
        ("TIDINGS_PORT", "", "expected an integer"),
        ("TIDINGS_PORT", "99999", "must be <= 65535"),
        ("TIDINGS_RATE_PER_SECOND", "fast", "expected a number"),
        ("TIDINGS_RATE_PER_SECOND", "inf", "finite"),
        ("TIDINGS_PING_INTERVAL", "soon", "invalid duration"),
        ("TIDINGS_LOG_LEVEL", "loud", "expected one of"),
    ],
)
def test_bad_env_value(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^environment variable {var}: .*{message}"):
        load_config(None, {var: value}, {})


def test_unknown_override() -> None:
    with pytest.raises(ConfigError, match="command-line override retention: unknown setting"):
        load_config(None, {}, {"retention": 5})


def test_bad_override() -> None:
    with pytest.raises(ConfigError, match=r"^command-line override port: expected an integer"):
        load_config(None, {}, {"port": 1.5})


def test_cross_field_error_names_both_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nping_interval = 60\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"TIDINGS_IDLE_TIMEOUT": "45"}, {})
    message = str(info.value)
    assert "idle_timeout (45) must be greater than ping_interval (60)" in message
    assert f"ping_interval from {path}: [server] ping_interval" in message
    assert "idle_timeout from environment variable TIDINGS_IDLE_TIMEOUT" in message


def test_cross_field_error_mentions_defaults() -> None:
    with pytest.raises(ConfigError, match="idle_timeout from the default"):
        load_config(None, {}, {"ping_interval": 100})


# --- limits against hostile peers (issue 8) ------------------------------------------------------


def test_limit_defaults() -> None:
    c = ServerConfig()
    assert c.proxy_header == "none"
    assert c.address_registrations_per_hour == 10
    assert (c.account_lookups_per_hour, c.address_lookups_per_hour) == (100, 1000)
    assert c.address_prekey_fetches_per_hour == 600
    assert c.device_one_time_prekeys_per_hour == 50
    assert c.new_account_age == DAY
    assert (c.new_account_rate_per_second, c.new_account_rate_burst) == (2.0, 50)
    assert c.new_account_prekey_fetches_per_hour == 50


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("proxy_header", "forwarded", "proxy_header: expected one of none, x-forwarded-for"),
        ("address_registrations_per_hour", -1, "must be >= 0"),
        ("account_lookups_per_hour", 1.5, "expected an integer"),
        ("new_account_age", -1.0, "new_account_age: must be >= 0"),
        ("new_account_rate_per_second", 0.0, "must be > 0"),
        ("new_account_rate_burst", 0, "must be >= 1"),
    ],
)
def test_invalid_limits_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**{field: value})  # type: ignore[arg-type]


def test_limits_load_from_every_layer(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nnew_account_age = "12h"\naccount_lookups_per_hour = 0\n')
    env = {"TIDINGS_PROXY_HEADER": "X-Real-IP", "TIDINGS_ADDRESS_LOOKUPS_PER_HOUR": "50"}
    c = load_config(path, env, {"address_registrations_per_hour": 0, "new_account_age": "2d"})
    assert (c.proxy_header, c.address_lookups_per_hour) == ("x-real-ip", 50)
    assert (c.account_lookups_per_hour, c.address_registrations_per_hour) == (0, 0)
    assert c.new_account_age == 2 * DAY  # the flag wins over the file


def test_the_stranger_share_is_a_fraction_of_the_queue() -> None:
    assert ServerConfig().max_stranger_queue == 5_000
    assert ServerConfig(max_queue=3, stranger_queue_share=0.5).max_stranger_queue == 1
    assert ServerConfig(max_queue=1, stranger_queue_share=0.1).max_stranger_queue == 1
    assert ServerConfig(stranger_queue_share=1).max_stranger_queue == 10_000
    for bad in (0, 1.5, -0.5):
        with pytest.raises(ConfigError, match="stranger_queue_share"):
            ServerConfig(stranger_queue_share=bad)


def test_tcp_mss_is_zero_or_a_real_segment_size() -> None:
    assert ServerConfig().tcp_mss == 1220
    assert ServerConfig(tcp_mss=0).tcp_mss == 0
    with pytest.raises(ConfigError, match="tcp_mss: expected 0 or at least 536, got 100"):
        ServerConfig(tcp_mss=100)


# --- The store ----------------------------------------------------------------------------------


def test_the_store_is_sqlite_unless_a_postgresql_url_is_given(tmp_path: Path) -> None:
    assert ServerConfig().store == "sqlite" and not ServerConfig().uses_postgres
    url = "postgresql://tidings@db.example:5432/tidings"
    assert load_config(None, {"TIDINGS_STORE": url}, {}).uses_postgres
    assert load_config(write(tmp_path, f'[server]\nstore = "{url}"\n'), {}, {}).store == url
    assert load_config(None, {}, {"store": "postgres://h/d"}).uses_postgres


@pytest.mark.parametrize("bad", ["mysql://u@h/d", "", "sqlite3", "postgresql:/h/d"])
def test_another_store_is_refused_naming_its_source(bad: str) -> None:
    with pytest.raises(ConfigError, match="environment variable TIDINGS_STORE: expected sqlite"):
        load_config(None, {"TIDINGS_STORE": bad}, {})


def test_a_refused_store_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, {}, {"store": "mysql://tidings:hunter2@h/d"})
    assert "hunter2" not in str(raised.value) and "tidings:***@h/d" in str(raised.value)


# --- push wake-ups (issue 13) ---------------------------------------------------------------------


def test_push_defaults_refuse_private_endpoints_and_name_a_placeholder_contact() -> None:
    c = ServerConfig()
    assert c.push_allow_private is False
    assert c.push_contact == "mailto:postmaster@localhost"


@pytest.mark.parametrize(("text", "value"), [("true", True), ("1", True), ("no", False)])
def test_push_allow_private_from_the_environment(text: str, value: bool) -> None:
    c = load_config(None, {"TIDINGS_PUSH_ALLOW_PRIVATE": text}, {})
    assert c.push_allow_private is value


def test_push_allow_private_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text("[server]\npush_allow_private = true\n")
    assert load_config(path, {}, {}).push_allow_private is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("push_allow_private", 1),
        ("push_allow_private", "yes"),
        ("push_contact", "admin@example.org"),
        ("push_contact", ""),
    ],
)
def test_bad_push_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        ServerConfig(**{field: value})  # type: ignore[arg-type]


def test_a_bad_boolean_in_the_environment_is_named() -> None:
    with pytest.raises(ConfigError, match="TIDINGS_PUSH_ALLOW_PRIVATE"):
        load_config(None, {"TIDINGS_PUSH_ALLOW_PRIVATE": "maybe"}, {})
