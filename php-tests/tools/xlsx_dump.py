#!/usr/bin/env python3
"""Independent XLSX reader for the Fluxo PHPUnit suite (uses openpyxl, not the extension).

usage:
  xlsx_dump.py FILE             full dump of a small workbook
  xlsx_dump.py --summary FILE   sheet names, row counts, first row (and all rows of
                                sheets with <= 100 rows) for large workbooks

Full dump prints one JSON object:
  {"sheetnames": [...],
   "sheets": [{"name", "freeze_panes", "max_row", "max_column",
               "rows":           [[value, ...], ...],   # dates as ISO strings
               "types":          [["int"|"float"|"str"|"bool"|"datetime"|"date"|"time"|"NoneType", ...]],
                                 # a number is "int" when its value is integral (|v| <= 2^53)
               "data_types":     [["n"|"s"|"b"|"d"|"f"|...]],    # openpyxl cell.data_type
               "number_formats": [["General"|"yyyy-mm-dd"|...]],
               "is_date":        [[bool, ...]],
               "bold":           [[bool, ...]],
               "columns": {"A": {"width", "hidden"}}, "autofilter": "A1:D3"}],
   "properties": {"title", "creator", "created", "company"}}
"""

import datetime
import json
import posixpath
import sys
import zipfile
import xml.etree.ElementTree as ET


def plain(value):
    # Excel stores every number as a double; the writer may spell 42 as "42" or "42.0".
    # Integral values that a double holds exactly are reported as ints so tests can
    # compare exact values (and "types" then says "int").
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return value


def full(path):
    import openpyxl

    wb = openpyxl.load_workbook(path)  # not read_only: fonts and panes are needed
    out = {"sheetnames": wb.sheetnames, "sheets": []}
    for ws in wb.worksheets:
        sheet = {
            "name": ws.title,
            "freeze_panes": ws.freeze_panes,
            "max_row": ws.max_row,
            "max_column": ws.max_column,
            "rows": [],
            "types": [],
            "data_types": [],
            "number_formats": [],
            "is_date": [],
            "bold": [],
            "columns": {
                letter: {"width": dim.width, "hidden": bool(dim.hidden)}
                for letter, dim in ws.column_dimensions.items()
            },
            "autofilter": ws.auto_filter.ref,
        }
        for row in ws.iter_rows(min_row=1, max_row=ws.max_row, max_col=ws.max_column):
            sheet["rows"].append([plain(c.value) for c in row])
            sheet["types"].append([type(plain(c.value)).__name__ if isinstance(c.value, float) else type(c.value).__name__ for c in row])
            sheet["data_types"].append([c.data_type for c in row])
            sheet["number_formats"].append([c.number_format for c in row])
            sheet["is_date"].append([bool(c.is_date) for c in row])
            sheet["bold"].append([bool(c.font is not None and c.font.b) for c in row])
        out["sheets"].append(sheet)
    props = wb.properties
    out["properties"] = {
        "title": props.title,
        "creator": props.creator,
        "created": props.created.isoformat() if props.created else None,
        "company": app_property(path, "Company"),
    }
    return out


def app_property(path, name):
    """A value of docProps/app.xml (openpyxl does not read it)."""
    with zipfile.ZipFile(path) as zf:
        if "docProps/app.xml" not in zf.namelist():
            return None
        root = ET.fromstring(zf.read("docProps/app.xml"))
    for el in root:
        if el.tag.endswith("}" + name):
            return el.text
    return None


NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def count_rows(zf, member):
    count = 0
    tail = b""
    with zf.open(member) as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            data = tail + chunk
            count += data.count(b"<row ") + data.count(b"<row>")
            tail = data[-4:]  # a 5-byte needle cannot lie entirely in 4 bytes: no double count
    return count


def summary(path):
    import openpyxl

    zf = zipfile.ZipFile(path)
    workbook = ET.fromstring(zf.read("xl/workbook.xml"))
    rels = ET.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    targets = {}
    for rel in rels.iter(NS_PKG_REL + "Relationship"):
        target = rel.get("Target")
        if target.startswith("/"):
            member = target.lstrip("/")
        else:
            member = posixpath.normpath(posixpath.join("xl", target))
        targets[rel.get("Id")] = member

    wb = openpyxl.load_workbook(path, read_only=True)
    sheets = []
    for sheet in workbook.iter(NS_MAIN + "sheet"):
        name = sheet.get("name")
        member = targets[sheet.get(NS_REL + "id")]
        rows = count_rows(zf, member)
        ws = wb[name]
        first = next(ws.iter_rows(min_row=1, max_row=1, values_only=True), ())
        info = {"name": name, "row_count": rows, "first_row": [plain(v) for v in first]}
        if rows <= 100:
            info["rows"] = [[plain(v) for v in r] for r in ws.iter_rows(values_only=True)]
        sheets.append(info)
    wb.close()
    return {"sheetnames": [s["name"] for s in sheets], "sheets": sheets}


def main(argv):
    if len(argv) == 3 and argv[1] == "--summary":
        result = summary(argv[2])
    elif len(argv) == 2:
        result = full(argv[1])
    else:
        sys.stderr.write(__doc__)
        return 2
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
