"""Small helpers of the shell launchers (scripts/common.sh), in any Python 3 and without the project's
dependencies; not meant to be run by hand.

  python scripts/launcher_tools.py free-port PORT
      PORT if it is free on 127.0.0.1, else a free port the system picks.
  python scripts/launcher_tools.py rank-table PATH SERVER_ID [LOCAL_IP...]
      Checks a version 1.0 HCCL rank table; prints the device count of all servers, then one
      "device_id rank_id" line per device of this server (SERVER_ID, else the server whose server_id is
      one of LOCAL_IP; the only one when there is one). A problem: one line on stdout, exit status 1.
"""
import json
import socket
import sys


def free_port(preferred):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


class RankTableError(Exception):
    pass


def read_rank_table(path, server_id, local_ips):
    """``(total devices, [(device_id, rank_id)] of this server)``."""
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, ValueError) as error:
        raise RankTableError(f"RANK_TABLE_FILE '{path}' is not a readable JSON file: {error}")
    servers = table.get("server_list") if isinstance(table, dict) else None
    if not isinstance(servers, list) or not servers:
        raise RankTableError(f"RANK_TABLE_FILE '{path}' has no server_list (a version 1.0 HCCL rank table is expected)")
    try:
        total = sum(len(server["device"]) for server in servers)
        if len(servers) == 1:
            mine = servers[0]
        else:
            wanted = [server_id] if server_id else local_ips
            matches = [server for server in servers if server.get("server_id") in wanted]
            if len(matches) != 1:
                raise RankTableError(f"RANK_TABLE_FILE '{path}' lists {len(servers)} servers and none is this host "
                                     f"({', '.join(wanted) or 'no address found'}); set SERVER_ID")
            mine = matches[0]
        pairs = [(int(device["device_id"]), int(device["rank_id"])) for device in mine["device"]]
    except (KeyError, TypeError, ValueError) as error:
        raise RankTableError(f"RANK_TABLE_FILE '{path}' has a malformed server or device entry: {error!r}")
    ranks = [rank for _, rank in pairs]
    if not pairs or len(set(ranks)) != len(ranks) or not all(0 <= rank < total for rank in ranks):
        raise RankTableError(f"RANK_TABLE_FILE '{path}' has no devices or duplicate/out-of-range rank_id values: "
                             f"{ranks}")
    return total, pairs


def main(argv):
    if argv[:1] == ["free-port"] and len(argv) == 2:
        print(free_port(int(argv[1])))
        return 0
    if argv[:1] == ["rank-table"] and len(argv) >= 3:
        try:
            total, pairs = read_rank_table(argv[1], argv[2], argv[3:])
        except RankTableError as error:
            print(error)
            return 1
        print(total)
        for device_id, rank_id in pairs:
            print(device_id, rank_id)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
