"""The dashboard's pages: each module gathers what one page shows from the Python API and
hands the template plain values (numbers formatted, charts laid out as SVG coordinates)."""
