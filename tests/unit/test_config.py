import argparse

import pytest

from hotpath import config as cfg


def _args(*argv):
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults():
    c = cfg.load(_args(), environ={})
    assert c.gateway.port == 8080 and c.gateway.max_subscriptions == 100
    assert c.ws_url == "wss://stream.bybit.com/v5/public/linear"
    assert c.rest_url == "https://api.bybit.com"
    assert (c.stream_prefix, c.source) == ("hotpath.futures", "hotpath")


def test_flag_beats_env_beats_default():
    env = {"HOTPATH_PORT": "9001", "HOTPATH_MAX_CLIENTS": "50"}
    c = cfg.load(_args("--port", "9002"), environ=env)
    assert c.gateway.port == 9002 and c.gateway.max_clients == 50


def test_types_are_converted_and_lists_split():
    c = cfg.load(_args("--testnet", "--symbols", "btcusdt, ETHUSDT"),
                 environ={"HOTPATH_PING_INTERVAL": "5.5"})
    assert c.upstream.testnet is True and c.upstream.symbols == ("BTCUSDT", "ETHUSDT")
    assert c.upstream.ping_interval == 5.5
    assert c.ws_url == cfg.BYBIT_TESTNET_WS


def test_explicit_urls_override_testnet_and_compat_overrides_names():
    c = cfg.load(_args("--testnet", "--bybit-ws-url", "ws://x/y", "--compat", "mudrex"),
                 environ={})
    assert c.ws_url == "ws://x/y"
    assert (c.stream_prefix, c.source) == ("mudrex.futures", "mudrex")


def test_unknown_variable_is_an_error():
    with pytest.raises(cfg.ConfigError, match="HOTPATH_PORTT"):
        cfg.load(_args(), environ={"HOTPATH_PORTT": "1"})


def test_the_build_setting_left_in_the_environment_is_not_an_error():
    # HOTPATH_COMPILE=1 pip install . && hotpath serve, in one shell
    config = cfg.load(_args(), environ={"HOTPATH_COMPILE": "1", "HOTPATH_PORT": "9001"})
    assert config.gateway.port == 9001


@pytest.mark.parametrize("argv, fragment", [
    (("--port", "http"), "--port"),
    (("--port", "70000"), "--port"),
    (("--upstream", "kraken"), "--upstream"),
    (("--log-format", "xml"), "--log-format"),
    (("--redis-namespace", "a:b"), "--redis-namespace"),
])
def test_bad_values_name_the_option(argv, fragment):
    with pytest.raises(cfg.ConfigError, match=fragment):
        cfg.load(_args(*argv), environ={})


def test_every_option_has_a_distinct_flag_and_variable():
    flags = [o.flag for o in cfg.OPTIONS]
    envs = [o.env for o in cfg.OPTIONS]
    assert len(set(flags)) == len(flags) and len(set(envs)) == len(envs)


def test_config_survives_the_trip_to_a_child():
    c = cfg.load(_args("--port", "1234", "--symbols", "A,B"), environ={})
    assert cfg.from_json(cfg.to_json(c)) == c


def test_readme_documents_every_option():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for opt in cfg.OPTIONS:
        assert f"| `{opt.flag}` | `{opt.env}` |" in readme, opt.flag
