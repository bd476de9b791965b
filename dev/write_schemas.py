"""Write schemas/ from the code: `make schemas`. tests/test_contract.py checks drift."""

from pathlib import Path

from bridge.contract import contract_files

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def main() -> None:
    SCHEMAS.mkdir(exist_ok=True)
    for name, text in contract_files().items():
        (SCHEMAS / name).write_text(text)
        print(f"wrote schemas/{name}")


if __name__ == "__main__":
    main()
