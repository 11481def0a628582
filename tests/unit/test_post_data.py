"""Foreign keys and post-data statements taken apart, without a server (see
tests/integration/test_fkeys.py for the same keys against a real target)."""

from __future__ import annotations

from pagila_tasks.replication import fkeys, schema


def test_interleaved_puts_one_tables_keys_apart() -> None:
    """Keys of one table never sit side by side while another table still has keys."""
    keys = [fkeys.ForeignKey("s", "a", f"a{i}", "") for i in range(3)] + [
        fkeys.ForeignKey("s", "b", "b0", ""),
        fkeys.ForeignKey("s", "c", "c0", ""),
    ]
    order = [fk.table for fk in fkeys.interleaved(keys)]
    assert order == ["a", "b", "c", "a", "a"]
    assert sorted(fk.name for fk in fkeys.interleaved(keys)) == sorted(fk.name for fk in keys)
    assert fkeys.interleaved([]) == []


def test_listing_leaves_out_foreign_keys_and_schemas() -> None:
    """FK CONSTRAINT entries (when asked), SCHEMA entries and comments leave a listing."""
    toc = (
        ";\n; Archive created\n;\n"
        "5; 2615 2200 SCHEMA - public pg_database_owner\n"
        "6; 0 0 COMMENT - SCHEMA public pg_database_owner\n"
        "3; 2606 16 CONSTRAINT public rental rental_pkey pagila\n"
        "4; 2606 17 FK CONSTRAINT public rental rental_inventory_id_fkey pagila\n"
        "5; 1259 18 INDEX public idx_fk_inventory_id pagila\n"
    )
    out = schema.listing(toc, foreign_keys=False)
    assert "rental_pkey" in out and "idx_fk_inventory_id" in out
    assert "COMMENT - SCHEMA public" in out and "2615 2200 SCHEMA" not in out
    assert "FK CONSTRAINT" not in out and not out.startswith(";")
    assert "FK CONSTRAINT" in schema.listing(toc, foreign_keys=True)


def test_post_data_statements_naming_only_their_table_are_taken_apart() -> None:
    """An index or key that names no replicated object but its own table is rewritten to the
    build schema; one naming a function, another table or a partitioned index stays as live."""
    script = (
        "SET statement_timeout = 0;\n\n"
        "--\n-- Name: actor actor_pkey; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\n"
        "ALTER TABLE ONLY public.actor\n    ADD CONSTRAINT actor_pkey PRIMARY KEY (actor_id);\n\n"
        "--\n-- Name: idx_title; Type: INDEX; Schema: Sales; Owner: -\n--\n\n"
        "SET default_tablespace = '';\n"
        'CREATE INDEX idx_title ON "Sales".film USING btree (title);\n\n'
        "--\n-- Name: idx_f; Type: INDEX; Schema: public; Owner: -\n--\n\n"
        "CREATE INDEX idx_f ON public.film USING btree (public.f(title));\n\n"
        "--\n-- Name: p_pkey_1; Type: INDEX ATTACH; Schema: public; Owner: -\n--\n\n"
        "ALTER INDEX public.p_pkey ATTACH PARTITION public.p1_pkey;\n\n"
        "--\n-- Name: t; Type: TRIGGER; Schema: public; Owner: -\n--\n\n"
        "CREATE TRIGGER t BEFORE UPDATE ON public.actor FOR EACH ROW EXECUTE FUNCTION public.f();\n"
    )
    apart, rest = schema.split_post_data(script, {"public": "stage_p", "Sales": "stage_s"})
    assert apart == [
        "ALTER TABLE ONLY stage_p.actor\n    ADD CONSTRAINT actor_pkey PRIMARY KEY (actor_id);",
        "CREATE INDEX idx_title ON stage_s.film USING btree (title);",
    ]
    assert "public.f(title)" in rest and "ATTACH PARTITION" in rest and "CREATE TRIGGER" in rest
    assert "actor_pkey" not in rest and "idx_title" not in rest
    assert rest.startswith("SET statement_timeout = 0;")


def test_what_a_copy_builds_early_is_grouped_by_its_table_keys_first() -> None:
    """The statements taken apart, per table (quoted names included), primary keys before the
    indexes; the rest is left to the callback."""
    from pagila_tasks.replication import indexes

    script = (
        "--\n-- Name: i1; Type: INDEX; Schema: public; Owner: -\n--\n\n"
        'CREATE INDEX i1 ON public."My ""T""" USING btree (a);\n\n'
        '--\n-- Name: "My ""T""" k; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\n'
        'ALTER TABLE ONLY public."My ""T"""\n    ADD CONSTRAINT k PRIMARY KEY (a);\n\n'
        "--\n-- Name: idx_title; Type: INDEX; Schema: Sales; Owner: -\n--\n\n"
        'CREATE INDEX idx_title ON "Sales".film USING btree (title);\n\n'
        "--\n-- Name: idx_f; Type: INDEX; Schema: public; Owner: -\n--\n\n"
        "CREATE INDEX idx_f ON public.film USING btree (public.f(title));\n"
    )
    grouped = indexes.by_table(script, {"public": "stage_p", "Sales": "stage_s"})
    assert grouped == {
        'public."My ""T"""': (
            'ALTER TABLE ONLY stage_p."My ""T"""\n    ADD CONSTRAINT k PRIMARY KEY (a);',
            'CREATE INDEX i1 ON stage_p."My ""T""" USING btree (a);',
        ),
        '"Sales".film': ("CREATE INDEX idx_title ON stage_s.film USING btree (title);",),
    }
