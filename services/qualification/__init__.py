"""Qualification: vets identified prospects against BANT or MEDDIC and opens deals, or disqualifies them."""
