from tests.fault.harness import SCENARIO_REPORT


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if SCENARIO_REPORT:
        terminalreporter.section("fault suite: per scenario")
        for line in SCENARIO_REPORT:
            terminalreporter.write_line(line)
