"""GBA Case Gateway: signed case exchange between Guangdong, Hong Kong and Macao."""

__version__ = "0.1.0"
